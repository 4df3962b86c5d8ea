'use strict';
const { test } = require('node:test');
const assert = require('node:assert/strict');
const k = require('../lib/kokon');
const h = require('./helpers');
const { toNano } = h;

async function setup() {
  const w = await h.world();
  const vault = await h.deployVault(w, { stake: toNano('10'), delay: 600 });
  return { w, vault };
}

const claimWith = (w, vault, body, from = w.worker) => from.send({ to: vault, value: toNano('0.05'), body });

test('open vault: owner only, once, with the stake', async () => {
  const w = await h.world();
  const { init, address } = k.stateInit('vault', k.vaultData({ owner: w.pk.publicKey, ownerWallet: w.proxy.address }));
  let r = await w.stranger.send({ to: address, value: toNano('2'), init, body: k.body.openVault(toNano('1'), 60) });
  h.expectFail(r, address, k.ERR.wrongSender);
  r = await w.proxy.send({ to: address, value: toNano('1'), init, body: k.body.openVault(toNano('1'), 60) });
  h.expectFail(r, address, k.ERR.valueTooLow);
  r = await w.proxy.send({ to: address, value: toNano('2'), init, body: k.body.openVault(toNano('1'), 0) });
  h.expectFail(r, address, k.ERR.badDelay);
  // Bounded: money is never locked for more than 30 days.
  r = await w.proxy.send({ to: address, value: toNano('2'), init, body: k.body.openVault(toNano('1'), 30 * 86400 + 1) });
  h.expectFail(r, address, k.ERR.badDelay);
  r = await w.proxy.send({ to: address, value: toNano('2'), init, body: k.body.openVault(toNano('1'), 60) });
  h.expectOk(r, address);
  r = await w.proxy.send({ to: address, value: toNano('2'), body: k.body.openVault(toNano('1'), 1) });
  h.expectFail(r, address, k.ERR.alreadyOpen);
  const s = await h.vaultState(w.chain, address);
  assert.equal(s.balance, toNano('1'));
  assert.equal(s.withdrawDelay, 60);
  assert.ok(s.ownerWallet.equals(w.proxy.address));
});

test('deposit from anyone adds what it carries, never more', async () => {
  const { w, vault } = await setup();
  let r = await w.stranger.send({ to: vault, value: toNano('1'), body: k.body.deposit(toNano('2')) });
  h.expectFail(r, vault, k.ERR.valueTooLow);
  r = await w.stranger.send({ to: vault, value: toNano('1'), body: k.body.deposit(0n) });
  h.expectFail(r, vault, k.ERR.zeroAmount);
  r = await w.stranger.send({ to: vault, value: toNano('1'), body: k.body.deposit(toNano('1')) });
  h.expectOk(r, vault);
  assert.equal((await h.vaultState(w.chain, vault)).balance, toNano('11'));
});

test('worker claim pays the increase to the consented address; replay and lower fail', async () => {
  const { w, vault } = await setup();
  const before = await w.worker.getBalance();
  let r = await claimWith(w, vault, h.workerClaimBody(w, vault, toNano('2')));
  h.expectOk(r, vault);
  assert.equal(await h.workerClaimed(w.chain, vault, w.wk.publicKey), toNano('2'));
  assert.equal((await h.vaultState(w.chain, vault)).balance, toNano('8'));
  const gained = (await w.worker.getBalance()) - before;
  assert.ok(gained > toNano('1.99') && gained < toNano('2'), `worker gained ${gained}`);
  r = await claimWith(w, vault, h.workerClaimBody(w, vault, toNano('2')));
  h.expectFail(r, vault, k.ERR.notAboveLatest);
  r = await claimWith(w, vault, h.workerClaimBody(w, vault, toNano('1')));
  h.expectFail(r, vault, k.ERR.notAboveLatest);
  h.expectOk(await claimWith(w, vault, h.workerClaimBody(w, vault, toNano('3'))), vault);
  assert.equal(await h.workerClaimed(w.chain, vault, w.wk.publicKey), toNano('3'));
  // Any sender may relay the claim; the money still goes to the worker's address.
  const relayed = await claimWith(w, vault, h.workerClaimBody(w, vault, toNano('4')), w.stranger);
  h.expectOk(relayed, vault);
  assert.ok(h.txTo(relayed, w.worker.address).length === 1);
});

test('worker claim: bad proxy signature, bad worker consent, other vault, wrong tag, above balance', async () => {
  const { w, vault } = await setup();
  let r = await claimWith(w, vault, h.workerClaimBody(w, vault, toNano('1'), { proxyKey: w.ck }));
  h.expectFail(r, vault, k.ERR.badSignature);
  // Someone else's payout address under the worker's name.
  r = await claimWith(w, vault, h.workerClaimBody(w, vault, toNano('1'), { workerKey: w.ck, payTo: w.stranger.address }));
  h.expectFail(r, vault, k.ERR.badSignature);
  r = await claimWith(w, vault, h.workerClaimBody(w, w.stranger.address, toNano('1')));
  h.expectFail(r, vault, k.ERR.wrongTarget);
  const v = h.beginCell().storeUint(k.TAG.channelVoucher, 32).storeAddress(vault)
    .storeUint(k.key(w.wk.publicKey), 256).storeCoins(1n).endCell();
  const consent = k.payoutConsent(v.hash(), w.worker.address);
  r = await claimWith(w, vault, k.body.workerClaim(h.sign(v.hash(), w.pk.secretKey), v, w.worker.address,
    h.sign(consent.hash(), w.wk.secretKey)));
  h.expectFail(r, vault, k.ERR.wrongTag);
  r = await claimWith(w, vault, h.workerClaimBody(w, vault, toNano('10.000000001')));
  h.expectFail(r, vault, k.ERR.vaultShort);
  assert.equal(await h.workerClaimed(w.chain, vault, w.wk.publicKey), 0n);
});

test('withdrawal: owner only, after the delay, workers claim first', async () => {
  const { w, vault } = await setup();
  const send = (from, body) => from.send({ to: vault, value: toNano('0.05'), body });
  h.expectFail(await send(w.stranger, k.body.requestWithdrawal(toNano('5'))), vault, k.ERR.wrongSender);
  h.expectFail(await send(w.proxy, k.body.withdraw()), vault, k.ERR.noWithdrawal);
  h.expectFail(await send(w.proxy, k.body.requestWithdrawal(0n)), vault, k.ERR.zeroAmount);
  h.expectOk(await send(w.proxy, k.body.requestWithdrawal(toNano('9'))), vault);
  assert.equal((await h.vaultState(w.chain, vault)).notBefore, h.T0 + 600);
  w.chain.now = h.T0 + 599;
  h.expectFail(await send(w.proxy, k.body.withdraw()), vault, k.ERR.delayNotOver);
  // During the delay a worker claims 2 TON; 9 no longer fit.
  h.expectOk(await claimWith(w, vault, h.workerClaimBody(w, vault, toNano('2'))), vault);
  w.chain.now = h.T0 + 600;
  h.expectFail(await send(w.stranger, k.body.withdraw()), vault, k.ERR.wrongSender);
  h.expectFail(await send(w.proxy, k.body.withdraw()), vault, k.ERR.vaultShort);
  h.expectOk(await send(w.proxy, k.body.requestWithdrawal(toNano('8'))), vault);
  w.chain.now = h.T0 + 1200;
  const before = await w.proxy.getBalance();
  h.expectOk(await send(w.proxy, k.body.withdraw()), vault);
  assert.ok((await w.proxy.getBalance()) - before > toNano('7.99'));
  const s = await h.vaultState(w.chain, vault);
  assert.equal(s.balance, 0n);
  assert.equal(s.pending, 0n);
});

test('unknown op fails; plain transfers top up the reserve, not the balance', async () => {
  const { w, vault } = await setup();
  h.expectFail(await w.stranger.send({ to: vault, value: toNano('0.05'),
    body: h.beginCell().storeUint(7, 32).endCell() }), vault, k.ERR.unknownOp);
  h.expectOk(await w.stranger.send({ to: vault, value: toNano('1') }), vault);
  assert.equal((await h.vaultState(w.chain, vault)).balance, toNano('10'));
});

test('a worker voucher for a testnet vault is refused by the mainnet vault of the same proxy', async () => {
  const w = await h.world();
  const testnet = await h.deployVault(w, { network: k.NETWORK.testnet });
  const mainnet = await h.deployVault(w, { network: k.NETWORK.mainnet });
  assert.ok(!testnet.equals(mainnet));
  const r = await claimWith(w, mainnet, h.workerClaimBody(w, testnet, toNano('1')));
  h.expectFail(r, mainnet, k.ERR.wrongTarget);
  assert.equal(await h.workerClaimed(w.chain, mainnet, w.wk.publicKey), 0n);
});

test('claims and withdrawals bring their gas', async () => {
  const { w, vault } = await setup();
  const low = toNano('0.01');
  let r = await w.worker.send({ to: vault, value: low, body: h.workerClaimBody(w, vault, toNano('1')) });
  h.expectFail(r, vault, k.ERR.valueTooLow);
  r = await w.proxy.send({ to: vault, value: low, body: k.body.requestWithdrawal(toNano('1')) });
  h.expectFail(r, vault, k.ERR.valueTooLow);
  r = await w.proxy.send({ to: vault, value: low, body: k.body.withdraw() });
  h.expectFail(r, vault, k.ERR.valueTooLow);
  assert.equal(await h.workerClaimed(w.chain, vault, w.wk.publicKey), 0n);
});
