// The browser tests drive Debian's Chromium (playwright-core downloads no browser). On a machine
// without it, install it when we may (root with apt-get, as here and in CI); otherwise say how.
import { execSync } from "node:child_process";
import { existsSync } from "node:fs";

const CHROMIUM = "/usr/bin/chromium";
if (!existsSync(CHROMIUM)) {
  const root = process.getuid?.() === 0;
  const apt = existsSync("/usr/bin/apt-get");
  if (!root || !apt) {
    console.error(`The browser tests need ${CHROMIUM} (Debian's chromium package): run \`sudo apt-get install chromium\`, then npm test again.`);
    process.exit(1);
  }
  console.log("Installing Debian's chromium for the browser tests (apt-get install chromium)...");
  execSync("apt-get update -qq && apt-get install -y -qq chromium", { stdio: "inherit" });
}
