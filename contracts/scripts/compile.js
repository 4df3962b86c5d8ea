// Compiles the Tolk contracts in src/ with the official compiler (@ton/tolk-js)
// and writes build/<name>.code.boc plus build/<name>.json (code hash, compiler).
// `--check` compiles in memory and fails if the committed artifacts differ.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { runTolkCompiler } = require('@ton/tolk-js');

const CONTRACTS = ['registry', 'channel', 'vault'];
const ROOT = path.join(__dirname, '..');
const SRC = path.join(ROOT, 'src');
const BUILD = path.join(ROOT, 'build');

async function compile(name) {
  const res = await runTolkCompiler({
    entrypointFileName: `${name}.tolk`,
    fsReadCallback: (p) => fs.readFileSync(path.join(SRC, p), 'utf8'),
  });
  if (res.status !== 'ok') {
    throw new Error(`${name}.tolk: ${res.message}`);
  }
  return {
    boc: Buffer.from(res.codeBoc64, 'base64'),
    meta: { contract: name, codeHashHex: res.codeHashHex, tolk: res.tolkVersion },
  };
}

async function main() {
  const check = process.argv.includes('--check');
  let drift = 0;
  for (const name of CONTRACTS) {
    const { boc, meta } = await compile(name);
    const bocPath = path.join(BUILD, `${name}.code.boc`);
    const metaPath = path.join(BUILD, `${name}.json`);
    const metaText = JSON.stringify(meta, null, 2) + '\n';
    if (check) {
      const same = fs.existsSync(bocPath) && fs.readFileSync(bocPath).equals(boc)
        && fs.readFileSync(metaPath, 'utf8') === metaText;
      if (!same) {
        console.error(`${name}: build/ does not match src/ (run \`npm run build\` and commit)`);
        drift++;
      } else {
        console.log(`${name}: ${meta.codeHashHex} matches build/`);
      }
    } else {
      fs.mkdirSync(BUILD, { recursive: true });
      fs.writeFileSync(bocPath, boc);
      fs.writeFileSync(metaPath, metaText);
      console.log(`${name}: ${boc.length} bytes, code hash ${meta.codeHashHex}`);
    }
  }
  if (drift) process.exit(1);
}

main().catch((e) => { console.error(e.message); process.exit(1); });
