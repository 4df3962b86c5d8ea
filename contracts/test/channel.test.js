'use strict';
const { test } = require('node:test');
const assert = require('node:assert/strict');
const k = require('../lib/kokon');
const h = require('./helpers');
const { toNano } = h;

async function setup(opts) {
  const w = await h.world();
  const vault = await h.deployVault(w);
  const channel = await h.deployChannel(w, vault, opts);
  return { w, vault, channel };
}

async function claim(w, channel, amount, { key = w.ck, from = w.proxy, target = channel } = {}) {
  const { voucher, signature } = h.signedChannelVoucher(key.secretKey, target, amount);
  return from.send({ to: channel, value: toNano('0.05'), body: k.body.claim(signature, voucher) });
}

test('open sets deposit and delay; getters read them', async () => {
  const { w, channel } = await setup({ deposit: toNano('5'), delay: 600 });
  const s = await h.channelState(w.chain, channel);
  assert.equal(s.deposit, toNano('5'));
  assert.equal(s.closeDelay, 600);
  assert.equal(s.claimed, 0n);
  assert.equal(s.closed, false);
  assert.equal(s.client, k.key(w.ck.publicKey));
  assert.equal(s.proxy, k.key(w.pk.publicKey));
});

test('open: only the client, only once, with value for amount and gas', async () => {
  const w = await h.world();
  const vault = await h.deployVault(w);
  const data = k.channelData({ client: w.ck.publicKey, proxy: w.pk.publicKey, clientWallet: w.client.address,
    proxyWallet: w.proxy.address, vault, seq: 0n });
  const { init, address } = k.stateInit('channel', data);
  let r = await w.stranger.send({ to: address, value: toNano('2'), init, body: k.body.open(toNano('1'), 60) });
  h.expectFail(r, address, k.ERR.wrongSender);
  r = await w.client.send({ to: address, value: toNano('1'), init, body: k.body.open(toNano('1'), 60) });
  h.expectFail(r, address, k.ERR.valueTooLow);
  r = await w.client.send({ to: address, value: toNano('2'), init, body: k.body.open(0n, 60) });
  h.expectFail(r, address, k.ERR.zeroAmount);
  // The close delay is bounded: never 0 (the proxy could not claim), never
  // above 30 days (the client's money locked).
  for (const delay of [0, 30 * 86400 + 1]) {
    r = await w.client.send({ to: address, value: toNano('2'), init, body: k.body.open(toNano('1'), delay) });
    h.expectFail(r, address, k.ERR.badDelay);
  }
  r = await w.client.send({ to: address, value: toNano('2'), init, body: k.body.open(toNano('1'), 60) });
  h.expectOk(r, address);
  r = await w.client.send({ to: address, value: toNano('2'), body: k.body.open(toNano('1'), 60) });
  h.expectFail(r, address, k.ERR.alreadyOpen);
});

test('top-up: client only, adds to the deposit', async () => {
  const { w, channel } = await setup();
  let r = await w.stranger.send({ to: channel, value: toNano('2'), body: k.body.topUp(toNano('1')) });
  h.expectFail(r, channel, k.ERR.wrongSender);
  r = await w.client.send({ to: channel, value: toNano('1'), body: k.body.topUp(toNano('1')) });
  h.expectFail(r, channel, k.ERR.valueTooLow);
  r = await w.client.send({ to: channel, value: toNano('2'), body: k.body.topUp(0n) });
  h.expectFail(r, channel, k.ERR.zeroAmount);
  r = await w.client.send({ to: channel, value: toNano('2'), body: k.body.topUp(toNano('1')) });
  h.expectOk(r, channel);
  assert.equal((await h.channelState(w.chain, channel)).deposit, toNano('6'));
});

test('claim moves the increase into the vault; replay and lower vouchers fail', async () => {
  const { w, vault, channel } = await setup();
  const before = await h.vaultState(w.chain, vault);
  let r = await claim(w, channel, toNano('1'));
  h.expectOk(r, channel);
  h.expectOk(r, vault);
  assert.equal((await h.channelState(w.chain, channel)).claimed, toNano('1'));
  assert.equal((await h.vaultState(w.chain, vault)).balance, before.balance + toNano('1'));
  r = await claim(w, channel, toNano('1'));
  h.expectFail(r, channel, k.ERR.notAboveLatest);
  r = await claim(w, channel, toNano('0.5'));
  h.expectFail(r, channel, k.ERR.notAboveLatest);
  r = await claim(w, channel, toNano('2.5'));
  h.expectOk(r, channel);
  assert.equal((await h.vaultState(w.chain, vault)).balance, before.balance + toNano('2.5'));
});

test('claim: bad signature, wrong key, wrong channel, above deposit, wrong sender, wrong tag', async () => {
  const { w, channel, vault } = await setup({ deposit: toNano('5') });
  const { voucher, signature } = h.signedChannelVoucher(w.ck.secretKey, channel, toNano('1'));
  const bad = Buffer.from(signature);
  bad[0] ^= 1;
  let r = await w.proxy.send({ to: channel, value: toNano('0.05'), body: k.body.claim(bad, voucher) });
  h.expectFail(r, channel, k.ERR.badSignature);
  // A tampered amount under the original signature.
  const tampered = k.channelVoucher(channel, toNano('2'));
  r = await w.proxy.send({ to: channel, value: toNano('0.05'), body: k.body.claim(signature, tampered) });
  h.expectFail(r, channel, k.ERR.badSignature);
  r = await claim(w, channel, toNano('1'), { key: w.pk });
  h.expectFail(r, channel, k.ERR.badSignature);
  r = await claim(w, channel, toNano('1'), { target: vault });
  h.expectFail(r, channel, k.ERR.wrongTarget);
  r = await claim(w, channel, toNano('5.000000001'));
  h.expectFail(r, channel, k.ERR.aboveDeposit);
  r = await claim(w, channel, toNano('1'), { from: w.stranger });
  h.expectFail(r, channel, k.ERR.wrongSender);
  const wrongTag = h.beginCell().storeUint(k.TAG.workerVoucher, 32).storeAddress(channel).storeCoins(1n).endCell();
  r = await w.proxy.send({ to: channel, value: toNano('0.05'),
    body: k.body.claim(h.sign(wrongTag.hash(), w.ck.secretKey), wrongTag) });
  h.expectFail(r, channel, k.ERR.wrongTag);
  assert.equal((await h.channelState(w.chain, channel)).claimed, 0n);
});

test('unilateral close: proxy claims during the delay, not after; refund after the delay', async () => {
  const { w, channel } = await setup({ deposit: toNano('5'), delay: 600 });
  let r = await w.proxy.send({ to: channel, value: toNano('0.05'), body: k.body.startClose() });
  h.expectFail(r, channel, k.ERR.wrongSender);
  r = await w.client.send({ to: channel, value: toNano('0.05'), body: k.body.finishClose() });
  h.expectFail(r, channel, k.ERR.notClosing);
  r = await w.client.send({ to: channel, value: toNano('0.05'), body: k.body.startClose() });
  h.expectOk(r, channel);
  assert.equal((await h.channelState(w.chain, channel)).deadline, h.T0 + 600);
  r = await w.client.send({ to: channel, value: toNano('0.05'), body: k.body.startClose() });
  h.expectFail(r, channel, k.ERR.notOpen);
  r = await w.client.send({ to: channel, value: toNano('2'), body: k.body.topUp(toNano('1')) });
  h.expectFail(r, channel, k.ERR.notOpen);
  w.chain.now = h.T0 + 599;
  h.expectOk(await claim(w, channel, toNano('2')), channel);
  r = await w.client.send({ to: channel, value: toNano('0.05'), body: k.body.finishClose() });
  h.expectFail(r, channel, k.ERR.delayNotOver);
  w.chain.now = h.T0 + 600;
  h.expectFail(await claim(w, channel, toNano('3')), channel, k.ERR.delayOver);
  const bal = await w.client.getBalance();
  // Anyone may finish a close whose delay is over; the refund goes to the client.
  r = await w.stranger.send({ to: channel, value: toNano('0.05'), body: k.body.finishClose() });
  h.expectOk(r, channel);
  const gained = (await w.client.getBalance()) - bal;
  assert.ok(gained >= toNano('3'), `refund ${gained} < unclaimed 3 TON`);
  const s = await h.channelState(w.chain, channel);
  assert.equal(s.closed, true);
  assert.equal(s.claimed, toNano('2'));
  h.expectFail(await claim(w, channel, toNano('3')), channel, k.ERR.notOpen);
});

test('cooperative close: claims the last voucher, refunds the rest at once', async () => {
  const { w, vault, channel } = await setup({ deposit: toNano('5') });
  h.expectOk(await claim(w, channel, toNano('1')), channel);
  const { voucher, signature } = h.signedChannelVoucher(w.ck.secretKey, channel, toNano('1.5'));
  let r = await w.client.send({ to: channel, value: toNano('0.05'), body: k.body.closeCooperative(signature, voucher) });
  h.expectFail(r, channel, k.ERR.wrongSender);
  const vaultBefore = (await h.vaultState(w.chain, vault)).balance;
  const clientBefore = await w.client.getBalance();
  r = await w.proxy.send({ to: channel, value: toNano('0.05'), body: k.body.closeCooperative(signature, voucher) });
  h.expectOk(r, channel);
  h.expectOk(r, vault);
  assert.equal((await h.vaultState(w.chain, vault)).balance, vaultBefore + toNano('0.5'));
  assert.ok((await w.client.getBalance()) - clientBefore >= toNano('3.5'));
  assert.equal((await h.channelState(w.chain, channel)).closed, true);
  r = await w.proxy.send({ to: channel, value: toNano('0.05'), body: k.body.closeCooperative(null, null) });
  h.expectFail(r, channel, k.ERR.notOpen);
});

test('cooperative close with an already claimed voucher, or none, claims nothing', async () => {
  const { w, vault, channel } = await setup({ deposit: toNano('5') });
  h.expectOk(await claim(w, channel, toNano('1')), channel);
  const { voucher, signature } = h.signedChannelVoucher(w.ck.secretKey, channel, toNano('1'));
  const r = await w.proxy.send({ to: channel, value: toNano('0.05'), body: k.body.closeCooperative(signature, voucher) });
  h.expectOk(r, channel);
  assert.equal(h.txTo(r, vault).length, 0);
  const s = await h.channelState(w.chain, channel);
  assert.equal(s.claimed, toNano('1'));
  assert.equal(s.closed, true);
});

test('a claim the vault refuses bounces and is undone', async () => {
  const w = await h.world();
  // The vault was never deployed: its address does not exist.
  const { address: vault } = k.stateInit('vault', k.vaultData({ owner: w.pk.publicKey, ownerWallet: w.proxy.address }));
  const channel = await h.deployChannel(w, vault);
  const r = await claim(w, channel, toNano('1'));
  const onChannel = h.txTo(r, channel).map(h.flattenTransaction);
  assert.equal(onChannel.length, 2, 'claim, then the bounce');
  assert.equal(onChannel[1].inMessageBounced, true);
  assert.equal((await h.channelState(w.chain, channel)).claimed, 0n);
});

test('unknown op fails; an empty body tops up the reserve', async () => {
  const { w, channel } = await setup();
  let r = await w.stranger.send({ to: channel, value: toNano('0.05'), body: h.beginCell().storeUint(0x1234, 32).endCell() });
  h.expectFail(r, channel, k.ERR.unknownOp);
  r = await w.stranger.send({ to: channel, value: toNano('0.05') });
  h.expectOk(r, channel);
});

test('a voucher signed for a testnet channel is refused by the same parties\' mainnet channel', async () => {
  const w = await h.world();
  const vault = await h.deployVault(w);
  const testnet = await h.deployChannel(w, vault, { network: k.NETWORK.testnet });
  const mainnet = await h.deployChannel(w, vault, { network: k.NETWORK.mainnet });
  assert.ok(!testnet.equals(mainnet), 'the network is part of the address');
  // Signed for the testnet channel, sent to the mainnet one.
  const { voucher, signature } = h.signedChannelVoucher(w.ck.secretKey, testnet, toNano('1'));
  const r = await w.proxy.send({ to: mainnet, value: toNano('0.05'), body: k.body.claim(signature, voucher) });
  h.expectFail(r, mainnet, k.ERR.wrongTarget);
  assert.equal((await h.channelState(w.chain, mainnet)).claimed, 0n);
  h.expectOk(await claim(w, testnet, toNano('1')), testnet);
});

test('every proxy and client operation brings its gas', async () => {
  const { w, channel } = await setup();
  const { voucher, signature } = h.signedChannelVoucher(w.ck.secretKey, channel, toNano('1'));
  const low = toNano('0.01');
  for (const [from, body] of [
    [w.proxy, k.body.claim(signature, voucher)],
    [w.proxy, k.body.closeCooperative(signature, voucher)],
    [w.client, k.body.startClose()],
  ]) {
    h.expectFail(await from.send({ to: channel, value: low, body }), channel, k.ERR.valueTooLow);
  }
  assert.equal((await h.channelState(w.chain, channel)).claimed, 0n);
});

test('a cooperative close whose claim bounces refunds everything to the client', async () => {
  const w = await h.world();
  // The vault was never deployed: the close's claim bounces.
  const { address: vault } = k.stateInit('vault', k.vaultData({ owner: w.pk.publicKey, ownerWallet: w.proxy.address }));
  const channel = await h.deployChannel(w, vault, { deposit: toNano('5') });
  const { voucher, signature } = h.signedChannelVoucher(w.ck.secretKey, channel, toNano('2'));
  const before = await w.client.getBalance();
  const r = await w.proxy.send({ to: channel, value: toNano('0.05'), body: k.body.closeCooperative(signature, voucher) });
  h.expectOk(r, channel);
  const s = await h.channelState(w.chain, channel);
  assert.equal(s.closed, true);
  assert.equal(s.claimed, 0n, 'the bounced claim is undone');
  assert.ok((await w.client.getBalance()) - before >= toNano('4.9'), 'the whole deposit is back');
});
