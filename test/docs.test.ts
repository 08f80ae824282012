// docs/API.md documents every export of the package: values and types, read from src/index.ts.
import { readFileSync } from "node:fs";
import { expect, test } from "vitest";

test("docs/API.md names every export of src/index.ts", () => {
  const index = readFileSync(new URL("../src/index.ts", import.meta.url), "utf8");
  const doc = readFileSync(new URL("../docs/API.md", import.meta.url), "utf8");
  const names = [...index.matchAll(/export (?:type )?\{([^}]+)\}/g)].flatMap((m) =>
    m[1]
      .split(",")
      .map((n) => n.replace(/^\s*type\s+/, "").trim())
      .filter(Boolean),
  );
  expect(names.length).toBeGreaterThan(30);
  const missing = names.filter(
    (n) => !doc.includes(`\`${n}\``) && !doc.includes(`\`${n}(`) && !doc.includes(`**\`${n}`) && !new RegExp(`\`new ${n}\\(`).test(doc),
  );
  expect(missing).toEqual([]);
});
