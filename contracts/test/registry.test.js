'use strict';
const { test } = require('node:test');
const { beginCell } = require('@ton/core');
const assert = require('node:assert/strict');
const { Dictionary } = require('@ton/core');
const k = require('../lib/kokon');
const h = require('./helpers');
const { toNano } = h;

async function setup() {
  const w = await h.world();
  const { init, address } = k.stateInit('registry', k.registryData({ owner: w.proxy.address }));
  const r = await w.proxy.send({ to: address, value: toNano('1'), init });
  h.expectOk(r, address);
  return { w, registry: address, owner: w.proxy };
}

const hash = (b) => Buffer.alloc(32, b);
const num = (buf) => ({ type: 'int', value: k.key(buf) });

test('owner sets images, models, proxies and economics; each change bumps the version', async () => {
  const { w, registry, owner } = await setup();
  const send = (body) => owner.send({ to: registry, value: toNano('0.05'), body });
  h.expectOk(await send(k.body.setImage(hash(1), k.ROLE.proxy | k.ROLE.worker)), registry);
  h.expectOk(await send(k.body.setImage(hash(2), k.ROLE.worker)), registry);
  h.expectOk(await send(k.body.setModel(hash(3), 'tiny-1b')), registry);
  h.expectOk(await send(k.body.setProxy(hash(4), { wallet: w.proxy.address, endpoint: 'proxy.example:7400' })), registry);
  const econ = k.economicsCell({ commissionBps: 500, channelCloseDelay: 7200, minProxyStake: toNano('100') });
  h.expectOk(await send(k.body.setEconomics(econ)), registry);
  assert.equal((await h.get(w.chain, registry, 'version')).readNumber(), 5);
  assert.equal((await h.get(w.chain, registry, 'imageRoles', [num(hash(1))])).readNumber(), 3);
  assert.equal((await h.get(w.chain, registry, 'imageRoles', [num(hash(2))])).readNumber(), 2);
  assert.equal((await h.get(w.chain, registry, 'imageRoles', [num(hash(9))])).readNumber(), 0);
  assert.equal((await h.get(w.chain, registry, 'modelAllowed', [num(hash(3))])).readBoolean(), true);
  assert.equal((await h.get(w.chain, registry, 'modelAllowed', [num(hash(9))])).readBoolean(), false);
  const e = await h.get(w.chain, registry, 'economics');
  assert.equal(e.readNumber(), 500);
  assert.equal(e.readNumber(), 7200);
  assert.equal(e.readNumber(), 3600);
  assert.equal(e.readBigNumber(), toNano('100'));
  const images = Dictionary.loadDirect(Dictionary.Keys.BigUint(256), Dictionary.Values.Uint(8),
    (await h.get(w.chain, registry, 'images')).readCellOpt());
  assert.deepEqual(images.keys().map((x) => x.toString(16)), [k.key(hash(1)), k.key(hash(2))].map((x) => x.toString(16)));
  // Each allowed model file carries the name it may be served under.
  const models = Dictionary.loadDirect(Dictionary.Keys.BigUint(256),
    { serialize: () => { throw new Error('read only'); }, parse: (sl) => sl.loadRef().beginParse().loadStringTail() },
    (await h.get(w.chain, registry, 'models')).readCellOpt());
  assert.equal(models.get(k.key(hash(3))), 'tiny-1b');
  const proxies = (await h.get(w.chain, registry, 'proxies')).readCellOpt();
  assert.ok(proxies);
  // Removal.
  h.expectOk(await send(k.body.setImage(hash(2), 0)), registry);
  h.expectOk(await send(k.body.setModel(hash(3), null)), registry);
  h.expectOk(await send(k.body.setProxy(hash(4), null)), registry);
  assert.equal((await h.get(w.chain, registry, 'imageRoles', [num(hash(2))])).readNumber(), 0);
  assert.equal((await h.get(w.chain, registry, 'modelAllowed', [num(hash(3))])).readBoolean(), false);
  assert.equal((await h.get(w.chain, registry, 'proxies')).readCellOpt(), null);
  assert.equal((await h.get(w.chain, registry, 'version')).readNumber(), 8);
});

test('every owner operation refuses other senders', async () => {
  const { w, registry } = await setup();
  const bodies = [
    k.body.setImage(hash(1), 1), k.body.setModel(hash(1), 'm'), k.body.setEconomics(k.economicsCell()),
    k.body.setProxy(hash(1), { wallet: w.stranger.address, endpoint: 'x:1' }),
    k.body.transferOwnership(w.stranger.address),
    k.body.setTdPolicy(beginCell().storeUint(1, 8).endCell()),
    k.body.setUpstream(hash(1), 'https://api.example.com'),
  ];
  for (const body of bodies) {
    h.expectFail(await w.stranger.send({ to: registry, value: toNano('0.05'), body }), registry, k.ERR.wrongSender);
  }
  assert.equal((await h.get(w.chain, registry, 'version')).readNumber(), 0);
});

test('ownership moves to a new address (a multisig, say) and only it can act', async () => {
  const { w, registry, owner } = await setup();
  h.expectOk(await owner.send({ to: registry, value: toNano('0.05'), body: k.body.transferOwnership(w.client.address) }), registry);
  assert.ok((await h.get(w.chain, registry, 'owner')).readAddress().equals(w.client.address));
  h.expectFail(await owner.send({ to: registry, value: toNano('0.05'), body: k.body.setModel(hash(1), 'm') }),
    registry, k.ERR.wrongSender);
  h.expectOk(await w.client.send({ to: registry, value: toNano('0.05'), body: k.body.setModel(hash(1), 'm') }), registry);
});

test('unknown op fails; the owner gets the unused value back', async () => {
  const { w, registry, owner } = await setup();
  h.expectFail(await owner.send({ to: registry, value: toNano('0.05'), body: h.beginCell().storeUint(1, 32).endCell() }),
    registry, k.ERR.unknownOp);
  const r = await owner.send({ to: registry, value: toNano('1'), body: k.body.setModel(hash(1), 'm') });
  const back = h.txTo(r, owner.address).map(h.flattenTransaction).filter((f) => f.from?.equals(registry));
  assert.equal(back.length, 1);
  assert.ok(back[0].value > toNano('0.99'));
});

test('the owner pins a TD policy; it comes back as set and images and models are untouched', async () => {
  const { w, registry, owner } = await setup();
  const send = (body) => owner.send({ to: registry, value: toNano('0.05'), body });
  assert.equal((await h.get(w.chain, registry, 'tdPolicy')).readCell().bits.length, 0, 'default rules');
  h.expectOk(await send(k.body.setImage(hash(1), k.ROLE.worker)), registry);
  const td = beginCell().storeBit(true).storeBuffer(Buffer.alloc(16, 3))
    .storeRef(beginCell().storeBuffer(Buffer.from('e702060000000000', 'hex')).endCell()).endCell();
  h.expectOk(await send(k.body.setTdPolicy(td)), registry);
  assert.ok((await h.get(w.chain, registry, 'tdPolicy')).readCell().equals(td));
  assert.equal((await h.get(w.chain, registry, 'imageRoles', [num(hash(1))])).readNumber(), 2);
  assert.equal((await h.get(w.chain, registry, 'version')).readNumber(), 2);
});

test('the owner lists and delists upstream origins; the rest of the trust is untouched', async () => {
  const { w, registry, owner } = await setup();
  const send = (body) => owner.send({ to: registry, value: toNano('0.05'), body });
  const read = async () => Dictionary.loadDirect(Dictionary.Keys.BigUint(256),
    { serialize: () => { throw new Error('read only'); }, parse: (sl) => sl.loadRef().beginParse().loadStringTail() },
    (await h.get(w.chain, registry, 'upstreams')).readCellOpt());
  assert.equal((await h.get(w.chain, registry, 'upstreams')).readCellOpt(), null, 'none at first');
  h.expectOk(await send(k.body.setModel(hash(3), 'tiny-1b')), registry);
  h.expectOk(await send(k.body.setUpstream(hash(5), 'https://api.example.com')), registry);
  h.expectOk(await send(k.body.setUpstream(hash(6), 'http://10.0.0.2:8000')), registry);
  const listed = await read();
  assert.equal(listed.get(k.key(hash(5))), 'https://api.example.com');
  assert.equal(listed.get(k.key(hash(6))), 'http://10.0.0.2:8000');
  h.expectOk(await send(k.body.setUpstream(hash(5), null)), registry);
  assert.deepEqual((await read()).values(), ['http://10.0.0.2:8000']);
  assert.equal((await h.get(w.chain, registry, 'modelAllowed', [num(hash(3))])).readBoolean(), true);
  assert.equal((await h.get(w.chain, registry, 'version')).readNumber(), 4);
});

test('a listed proxy publishes its gateway keys from its own wallet; nobody else can, and delisting withdraws them', async () => {
  const { w, registry, owner } = await setup();
  const send = (from, body) => from.send({ to: registry, value: toNano('0.05'), body });
  const read = async () => Dictionary.loadDirect(Dictionary.Keys.BigUint(256),
    { serialize: () => { throw new Error('read only'); },
      parse: (sl) => {
        const ohttp = sl.loadRef();
        return { ohttp, credits: sl.loadBuffer(32) };
      } },
    (await h.get(w.chain, registry, 'gateways')).readCellOpt());
  // 300 bytes: a snake of three cells.
  const keys = Buffer.from(Array.from({ length: 300 }, (_, i) => i % 251));
  const entry = { ohttp: keys, credits: hash(7) };
  // Not listed yet: refused, even from the wallet it will have.
  h.expectFail(await send(w.client, k.body.setGatewayKeys(hash(4), entry)), registry, k.ERR.wrongSender);
  h.expectOk(await send(owner, k.body.setProxy(hash(4), { wallet: w.client.address, endpoint: 'p:7400' })), registry);
  // Listed: the owner is not the proxy's wallet, nor is a stranger.
  for (const from of [owner, w.stranger]) {
    h.expectFail(await send(from, k.body.setGatewayKeys(hash(4), entry)), registry, k.ERR.wrongSender);
  }
  assert.equal((await h.get(w.chain, registry, 'gateways')).readCellOpt(), null);
  h.expectOk(await send(w.client, k.body.setGatewayKeys(hash(4), entry)), registry);
  let got = (await read()).get(k.key(hash(4)));
  assert.ok(got.ohttp.equals(k.bytesCell(keys)), 'the keys come back as published');
  assert.ok(got.credits.equals(hash(7)));
  // A rotation replaces them; another proxy's entry is not the first's to set.
  const rotated = { ohttp: Buffer.from('rotated'), credits: hash(7) };
  h.expectOk(await send(w.client, k.body.setGatewayKeys(hash(4), rotated)), registry);
  assert.ok((await read()).get(k.key(hash(4))).ohttp.equals(k.bytesCell(rotated.ohttp)));
  h.expectOk(await send(owner, k.body.setProxy(hash(5), { wallet: w.stranger.address, endpoint: 'q:7400' })), registry);
  h.expectFail(await send(w.client, k.body.setGatewayKeys(hash(5), entry)), registry, k.ERR.wrongSender);
  // Delisting the proxy withdraws its keys.
  h.expectOk(await send(owner, k.body.setProxy(hash(4), null)), registry);
  assert.equal((await h.get(w.chain, registry, 'gateways')).readCellOpt(), null);
  // Every accepted change bumped the version: two listings, two publications, one delisting.
  assert.equal((await h.get(w.chain, registry, 'version')).readNumber(), 5);
});
