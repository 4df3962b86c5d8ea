#!/usr/bin/env node
// A local TON chain for development and tests: @ton/sandbox (the real TVM
// emulator with the mainnet config) behind the subset of toncenter's v3 HTTP
// API that Kokon's `ton` settlement backend uses. It is not a network: one
// process, no blocks, no validators. Transactions execute when a message
// arrives, in order, with the wall clock (plus any offset a test adds).
//
//   node sandbox/server.js [--listen 127.0.0.1:0] [--state FILE]
//
// With --state, the chain survives restarts (written atomically after every
// change). Prints `listening on http://HOST:PORT` once ready.
//
// toncenter v3 endpoints: GET /api/v3/account, POST /api/v3/runGetMethod,
// POST /api/v3/message, GET /api/v3/transactionsByMessage,
// GET /api/v3/transactions. Sandbox-only: POST /sandbox/fund (the faucet),
// GET|POST /sandbox/time (read or advance the chain clock).
'use strict';
const http = require('node:http');
const fs = require('node:fs');
const path = require('node:path');
const { Blockchain, snapshotToSerializable, snapshotFromSerializable } = require('@ton/sandbox');
const { Address, Cell, beginCell, storeMessage, loadMessage, TupleBuilder } = require('@ton/core');

const MAX_BODY = 256 * 1024;
const MAX_TXS_KEPT = 100_000;

function args() {
  const a = { listen: '127.0.0.1:0', state: null };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--listen') a.listen = argv[++i];
    else if (argv[i] === '--state') a.state = argv[++i];
    else if (argv[i] === '--help' || argv[i] === '-h') {
      console.log('usage: server.js [--listen HOST:PORT] [--state FILE]');
      process.exit(0);
    } else throw new Error(`unknown argument ${argv[i]}`);
  }
  return a;
}

class HttpError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

const b64 = (buf) => Buffer.from(buf).toString('base64');
const raw = (addr) => (addr ? addr.toRawString().toUpperCase() : null);
const messageHash = (msg) => b64(beginCell().store(storeMessage(msg)).endCell().hash());

function parseAddress(s) {
  try { return Address.parse(s); } catch { throw new HttpError(400, `bad address ${JSON.stringify(s)}`); }
}

// Normalises a hash given as base64, base64url or hex to base64.
function normHash(s) {
  if (typeof s !== 'string') throw new HttpError(400, 'missing msg_hash');
  const buf = /^[0-9a-fA-F]{64}$/.test(s) ? Buffer.from(s, 'hex') : Buffer.from(s.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  if (buf.length !== 32) throw new HttpError(400, 'msg_hash must be 32 bytes');
  return b64(buf);
}

function renderMessage(msg) {
  const info = msg.info;
  const internal = info.type === 'internal';
  const body = msg.body.beginParse();
  return {
    hash: messageHash(msg),
    source: info.type === 'external-in' ? null : raw(info.src),
    destination: info.type === 'external-out' ? null : raw(info.dest),
    value: internal ? info.value.coins.toString() : null,
    fwd_fee: internal ? info.forwardFee.toString() : null,
    bounce: internal ? info.bounce : null,
    bounced: internal ? info.bounced : null,
    created_lt: internal || info.type === 'external-out' ? info.createdLt.toString() : null,
    opcode: body.remainingBits >= 32 ? body.preloadUint(32) : null,
  };
}

function renderTransaction(tx) {
  const d = tx.description;
  const c = d.computePhase;
  return {
    account: raw(new Address(0, Buffer.from(tx.address.toString(16).padStart(64, '0'), 'hex'))),
    hash: b64(tx.hash()),
    lt: tx.lt.toString(),
    now: tx.now,
    total_fees: tx.totalFees.coins.toString(),
    orig_status: tx.oldStatus,
    end_status: tx.endStatus,
    description: {
      type: d.type,
      aborted: d.aborted ?? false,
      storage_ph: d.storagePhase ? { storage_fees_collected: d.storagePhase.storageFeesCollected.toString() } : null,
      compute_ph: c?.type === 'vm'
        ? { skipped: false, success: c.success, exit_code: c.exitCode, gas_used: c.gasUsed.toString() }
        : { skipped: true, reason: c?.reason ?? null },
      action: d.actionPhase ? { success: d.actionPhase.success, result_code: d.actionPhase.resultCode } : null,
    },
    in_msg: tx.inMessage ? renderMessage(tx.inMessage) : null,
    out_msgs: [...tx.outMessages.values()].map(renderMessage),
  };
}

function stackItem(it) {
  switch (it.type) {
    case 'int': return { type: 'num', value: '0x' + it.value.toString(16) };
    case 'null': return { type: 'null' };
    case 'cell': return { type: 'cell', value: b64(it.cell.toBoc()) };
    case 'slice': return { type: 'slice', value: b64(it.cell.toBoc()) };
    case 'builder': return { type: 'builder', value: b64(it.cell.toBoc()) };
    case 'tuple': return { type: 'tuple', value: it.items.map(stackItem) };
    default: return { type: it.type };
  }
}

function stackArgs(stack) {
  const t = new TupleBuilder();
  for (const it of stack ?? []) {
    if (it.type === 'num') t.writeNumber(BigInt(it.value));
    else if (it.type === 'cell') t.writeCell(Cell.fromBase64(it.value));
    else if (it.type === 'slice') t.writeSlice(Cell.fromBase64(it.value));
    else throw new HttpError(400, `unsupported stack entry type ${it.type}`);
  }
  return t.build();
}

class Chain {
  constructor(statePath) {
    this.statePath = statePath;
    this.offset = 0;
    this.txs = [];            // rendered, oldest first
    this.byInMsg = new Map(); // in_msg hash -> index in txs
    this.queue = Promise.resolve();
  }

  async open() {
    this.bc = await Blockchain.create();
    this.bc.verbosity = { ...this.bc.verbosity, print: false, vmLogs: 'none', blockchainLogs: false, debugLogs: false };
    if (this.statePath && fs.existsSync(this.statePath)) {
      const saved = JSON.parse(fs.readFileSync(this.statePath, 'utf8'));
      await this.bc.loadFrom(snapshotFromSerializable(saved.snapshot));
      this.offset = saved.offset;
      saved.txs.forEach((t) => this.index(t));
    }
    this.tick();
    this.faucet = await this.bc.treasury('kokon-sandbox-faucet');
  }

  now() { return Math.floor(Date.now() / 1000) + this.offset; }
  tick() { this.bc.now = Math.max(this.now(), this.bc.now ?? 0); }

  index(t) {
    this.byInMsg.set(t.in_msg?.hash, this.txs.length);
    this.txs.push(t);
  }

  save() {
    if (!this.statePath) return;
    const tmp = this.statePath + '.tmp';
    const keep = this.txs.slice(-MAX_TXS_KEPT);
    fs.writeFileSync(tmp, JSON.stringify({ snapshot: snapshotToSerializable(this.bc.snapshot()), offset: this.offset, txs: keep }));
    fs.renameSync(tmp, this.statePath);
  }

  // Runs `f` after every earlier change, one at a time.
  serial(f) {
    const p = this.queue.then(f);
    this.queue = p.catch(() => {});
    return p;
  }

  async execute(message) {
    this.tick();
    const result = await this.bc.sendMessage(message);
    result.transactions.forEach((tx) => this.index(renderTransaction(tx)));
    this.save();
  }

  send(boc) {
    let cell;
    try {
      cell = Cell.fromBase64(boc);
    } catch {
      throw new HttpError(400, 'boc is not a valid bag of cells');
    }
    let msg;
    try {
      msg = loadMessage(cell.beginParse());
    } catch {
      throw new HttpError(400, 'boc is not a message');
    }
    if (msg.info.type !== 'external-in') throw new HttpError(400, 'only external messages can be sent');
    const hash = messageHash(msg);
    return this.serial(async () => {
      try {
        await this.execute(msg);
      } catch (e) {
        // Like a real node: an external message the contract did not accept
        // is dropped, and the caller learns it by never seeing a transaction.
        process.stderr.write(`sandbox: message ${hash} not accepted: ${String(e.message).split('\n')[0]}\n`);
      }
      return { message_hash: hash };
    });
  }

  fund(address, amount) {
    return this.serial(async () => {
      this.tick();
      const r = await this.faucet.send({ to: address, value: amount, bounce: false });
      r.transactions.forEach((tx) => this.index(renderTransaction(tx)));
      this.save();
      return { ok: true };
    });
  }

  async account(address) {
    const c = await this.bc.getContract(address);
    const st = c.accountState;
    const status = !st ? (c.balance > 0n ? 'uninit' : 'nonexist') : st.type;
    const last = c.lastTransaction;
    return {
      address: raw(address),
      balance: c.balance.toString(),
      status: status === 'uninit' && c.balance === 0n ? 'nonexist' : status,
      code: st?.type === 'active' && st.state.code ? b64(st.state.code.toBoc()) : null,
      data: st?.type === 'active' && st.state.data ? b64(st.state.data.toBoc()) : null,
      last_transaction_lt: last ? last.lt.toString() : null,
      last_transaction_hash: last ? b64(last.hash()) : null,
    };
  }

  async runGetMethod(address, method, stack) {
    this.tick();
    try {
      const r = await this.bc.runGetMethod(address, method, stackArgs(stack));
      return { gas_used: Number(r.gasUsed), exit_code: r.exitCode, stack: r.stack.map(stackItem) };
    } catch (e) {
      const code = e.exitCode ?? (/does not exist|non-active|not active|uninit/i.test(e.message) ? -256 : -1);
      return { gas_used: 0, exit_code: code, stack: [], error: String(e.message).split('\n')[0] };
    }
  }
}

async function readJson(req) {
  let size = 0;
  const chunks = [];
  for await (const c of req) {
    size += c.length;
    if (size > MAX_BODY) throw new HttpError(413, `body over ${MAX_BODY} bytes`);
    chunks.push(c);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
  } catch {
    throw new HttpError(400, 'body is not JSON');
  }
}

async function route(chain, req, url) {
  const q = url.searchParams;
  const p = url.pathname;
  if (req.method === 'GET' && p === '/api/v3/account') return chain.account(parseAddress(q.get('address')));
  if (req.method === 'POST' && p === '/api/v3/runGetMethod') {
    const b = await readJson(req);
    if (typeof b.method !== 'string') throw new HttpError(400, 'missing method');
    return chain.runGetMethod(parseAddress(b.address), b.method, b.stack);
  }
  if (req.method === 'POST' && p === '/api/v3/message') {
    const b = await readJson(req);
    if (typeof b.boc !== 'string') throw new HttpError(400, 'missing boc');
    return chain.send(b.boc);
  }
  if (req.method === 'GET' && p === '/api/v3/transactionsByMessage') {
    const i = chain.byInMsg.get(normHash(q.get('msg_hash')));
    return { transactions: i === undefined ? [] : [chain.txs[i]] };
  }
  if (req.method === 'GET' && p === '/api/v3/transactions') {
    const account = raw(parseAddress(q.get('account')));
    const limit = Math.min(Number(q.get('limit') ?? 100) || 100, 1000);
    const mine = chain.txs.filter((t) => t.account === account);
    const sorted = q.get('sort') === 'asc' ? mine : mine.reverse();
    return { transactions: sorted.slice(0, limit) };
  }
  if (req.method === 'POST' && p === '/sandbox/fund') {
    const b = await readJson(req);
    const amount = BigInt(b.amount ?? 0);
    if (amount <= 0n || amount > 1_000_000_000_000_000n) throw new HttpError(400, 'amount must be 1..10^18 nanoton');
    return chain.fund(parseAddress(b.address), amount);
  }
  if (p === '/sandbox/time') {
    if (req.method === 'POST') {
      const b = await readJson(req);
      const s = Number(b.advance ?? 0);
      if (!Number.isInteger(s) || s < 0 || s > 10 * 365 * 86400) throw new HttpError(400, 'advance must be 0..10 years of seconds');
      await chain.serial(async () => { chain.offset += s; chain.tick(); chain.save(); });
    }
    return { now: chain.now() };
  }
  throw new HttpError(404, `no route ${req.method} ${p}`);
}

async function main() {
  const a = args();
  if (a.state) fs.mkdirSync(path.dirname(path.resolve(a.state)), { recursive: true });
  const chain = new Chain(a.state);
  await chain.open();
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, 'http://sandbox');
    let status = 200;
    let out;
    try {
      out = await route(chain, req, url);
    } catch (e) {
      status = e.status ?? 500;
      out = { error: e.message };
    }
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(out));
  });
  const [host, port] = [a.listen.slice(0, a.listen.lastIndexOf(':')), Number(a.listen.slice(a.listen.lastIndexOf(':') + 1))];
  server.listen(port, host, () => {
    const addr = server.address();
    console.log(`listening on http://${addr.address}:${addr.port}`);
  });
  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((e) => { console.error(e.stack ?? e.message); process.exit(1); });
