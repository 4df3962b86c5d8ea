'use strict';
// Gas and fees of every successful operation, checked against the bounds
// documented in docs/ECONOMICS.md ("On TON"); the table goes to
// docs/BENCHMARKS.md. Run alone with `node --test test/gas.test.js`.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const k = require('../lib/kokon');
const h = require('./helpers');
const { toNano } = h;

// Upper bounds on compute gas per operation (the contract's own transaction).
// Measured values plus about 20 %.
const GAS_BOUND = {
  'vault: open (deploy)': 2700, 'vault: deposit': 2600, 'vault: worker claim': 6800,
  'vault: request withdrawal': 3000, 'vault: withdraw': 4800,
  'channel: open (deploy)': 3600, 'channel: top-up': 3700, 'channel: claim': 6200,
  'channel: cooperative close': 8700, 'channel: start close': 3600, 'channel: finish close': 5000,
  'registry: set model': 6100, 'registry: a proxy publishes its keys': 6300,
};
// Every operation's total fees over its whole trace stay under this.
const FEE_BOUND = toNano('0.012');
// Storage rent of a year for a channel or vault stays under this.
const RENT_BOUND = toNano('0.015');

function measure(rows, name, result, address) {
  const f = h.expectOk(result, address);
  const tx = h.txTo(result, address)[0];
  const gas = Number(tx.description.computePhase.gasUsed);
  const fees = result.transactions.reduce((s, t) => s + t.totalFees.coins, 0n);
  rows.push({ name, gas, fees });
  return f;
}

test('gas and fees per operation stay within the documented bounds', async () => {
  const rows = [];
  const w = await h.world();
  const v = k.stateInit('vault', k.vaultData({ owner: w.pk.publicKey, ownerWallet: w.proxy.address }));
  const vault = v.address;
  measure(rows, 'vault: open (deploy)', await w.proxy.send({ to: vault, value: toNano('10.05'), init: v.init,
    body: k.body.openVault(toNano('10'), 600) }), vault);
  measure(rows, 'vault: deposit', await w.stranger.send({ to: vault, value: toNano('1.01'), body: k.body.deposit(toNano('1')) }), vault);
  const c = k.stateInit('channel', k.channelData({ client: w.ck.publicKey, proxy: w.pk.publicKey,
    clientWallet: w.client.address, proxyWallet: w.proxy.address, vault, seq: 0n }));
  const channel = c.address;
  measure(rows, 'channel: open (deploy)', await w.client.send({ to: channel, value: toNano('5.05'), init: c.init,
    body: k.body.open(toNano('5'), 600) }), channel);
  measure(rows, 'channel: top-up', await w.client.send({ to: channel, value: toNano('1.05'), body: k.body.topUp(toNano('1')) }), channel);
  const sv = h.signedChannelVoucher(w.ck.secretKey, channel, toNano('1'));
  measure(rows, 'channel: claim', await w.proxy.send({ to: channel, value: toNano('0.05'),
    body: k.body.claim(sv.signature, sv.voucher) }), channel);
  measure(rows, 'vault: worker claim', await w.worker.send({ to: vault, value: toNano('0.05'),
    body: h.workerClaimBody(w, vault, toNano('0.9')) }), vault);
  measure(rows, 'vault: request withdrawal', await w.proxy.send({ to: vault, value: toNano('0.05'),
    body: k.body.requestWithdrawal(toNano('1')) }), vault);
  w.chain.now = h.T0 + 600;
  measure(rows, 'vault: withdraw', await w.proxy.send({ to: vault, value: toNano('0.05'), body: k.body.withdraw() }), vault);
  measure(rows, 'channel: start close', await w.client.send({ to: channel, value: toNano('0.05'), body: k.body.startClose() }), channel);
  w.chain.now = h.T0 + 1200;
  measure(rows, 'channel: finish close', await w.client.send({ to: channel, value: toNano('0.05'), body: k.body.finishClose() }), channel);

  const c2 = k.stateInit('channel', k.channelData({ client: w.ck.publicKey, proxy: w.pk.publicKey,
    clientWallet: w.client.address, proxyWallet: w.proxy.address, vault, seq: 1n }));
  h.expectOk(await w.client.send({ to: c2.address, value: toNano('5.05'), init: c2.init, body: k.body.open(toNano('5'), 600) }), c2.address);
  const last = h.signedChannelVoucher(w.ck.secretKey, c2.address, toNano('2'));
  measure(rows, 'channel: cooperative close', await w.proxy.send({ to: c2.address, value: toNano('0.05'),
    body: k.body.closeCooperative(last.signature, last.voucher) }), c2.address);

  const r = k.stateInit('registry', k.registryData({ owner: w.proxy.address }));
  h.expectOk(await w.proxy.send({ to: r.address, value: toNano('1'), init: r.init }), r.address);
  measure(rows, 'registry: set model', await w.proxy.send({ to: r.address, value: toNano('0.05'),
    body: k.body.setModel(Buffer.alloc(32, 1), 'm') }), r.address);
  // A proxy's rotation: two OHTTP key configurations (86 bytes: 2 × (2 + 41)) and its
  // credit keys' fingerprint, sent from its own wallet.
  // (On a registry of its own, so the rent below stays that of a registry
  // holding one model.)
  const r2 = k.stateInit('registry', k.registryData({ owner: w.stranger.address }));
  h.expectOk(await w.stranger.send({ to: r2.address, value: toNano('1'), init: r2.init }), r2.address);
  h.expectOk(await w.stranger.send({ to: r2.address, value: toNano('0.05'),
    body: k.body.setProxy(Buffer.alloc(32, 2), { wallet: w.client.address, endpoint: 'p:7400' }) }), r2.address);
  measure(rows, 'registry: a proxy publishes its keys', await w.client.send({ to: r2.address, value: toNano('0.05'),
    body: k.body.setGatewayKeys(Buffer.alloc(32, 2), { ohttp: Buffer.alloc(86, 7), credits: Buffer.alloc(32, 9) }) }), r2.address);

  // A year of storage rent, charged on the next transaction.
  const rent = {};
  w.chain.now = h.T0 + 1200 + 365 * 86400;
  for (const [name, addr] of [['vault', vault], ['registry', r.address]]) {
    const res = await w.stranger.send({ to: addr, value: toNano('0.05') });
    const tx = h.txTo(res, addr)[0];
    rent[name] = tx.description.storagePhase?.storageFeesCollected ?? 0n;
  }
  console.log('| operation | gas | fees of the whole trace (nanoton) |');
  console.log('|---|---:|---:|');
  for (const row of rows) console.log(`| ${row.name} | ${row.gas} | ${row.fees} |`);
  console.log(`storage rent for a year: vault ${rent.vault}, registry ${rent.registry} nanoton`);
  // Checked after printing, so a failure shows every number.
  for (const row of rows) {
    assert.ok(row.gas <= GAS_BOUND[row.name], `${row.name}: ${row.gas} gas > bound ${GAS_BOUND[row.name]}`);
    assert.ok(row.fees <= FEE_BOUND, `${row.name}: fees ${row.fees} > ${FEE_BOUND}`);
  }
  assert.equal(rows.length, Object.keys(GAS_BOUND).length);
  for (const [name, fee] of Object.entries(rent)) assert.ok(fee <= RENT_BOUND, `${name} rent ${fee}`);
});
