//! The three job cores together, without sockets, on a virtual clock.
//!
//! A gateway [`GatewayFlow`], a proxy [`JobFlow`] and one [`WorkerFlow`]
//! per attempt are driven by one event queue ordered by virtual time (the
//! quinn test harness is the model): every message between them is an
//! event delivered after a link delay, the engine is a script of tokens,
//! and the ledger and the books answer after a configurable delay or with
//! a failure. Faults are injected as events: a worker gone before its
//! first byte or mid-stream, a silent worker, a client gone, a ledger slow
//! or failing, a receipt that cannot be signed. Each run is deterministic
//! (a seed-free queue) and ends by checking the money and the slots: every
//! reservation billed or released, the client paid what the proxy billed
//! for each job (or at most one receipt interval less, when a receipt was in
//! flight as the job broke off), the proxy billed only receipts the worker
//! signed, no engine left running, every router slot free.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use kokon_gateway::flow::{self as gw, GatewayFlow};
use kokon_money::{Hash32, Receipt, Signature, Signed, TokenUsage};
use kokon_proto::job::Chunk;
use kokon_proto::{ErrorCode, FinishReason, Frame, JobEnd, JobError, ReceiptEnvelope, Usage};
use kokon_proxy::flow::{self as px, JobFlow};
use kokon_route::{RouteError, WorkerId};
use kokon_worker::flow::{self as wk, WorkerFlow};

const LINK: Duration = Duration::from_millis(1);
const TOKEN_EVERY: Duration = Duration::from_millis(25);
const PROXY_IDLE: Duration = Duration::from_secs(120);
const ENGINE_IDLE: Duration = Duration::from_secs(300);
const DRAIN: Duration = Duration::from_secs(10);

/// A credit reservation: not `Clone`, like the real one.
#[derive(Debug)]
struct Res {
    job: usize,
    amount: u64,
}

/// What goes wrong at a worker.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    None,
    /// The link breaks as the job arrives.
    GoneBeforeFirstByte,
    /// The link breaks after this many tokens.
    GoneAfter(usize),
    /// The link stays up; the worker never answers.
    Silent,
    /// The engine finishes but the receipt cannot be recorded.
    SignFails,
}

#[derive(Debug)]
enum Ev {
    GwAuthorised(usize),
    GwSubmitted(usize),
    GwEvent(usize, Option<Result<gw::Event, JobError>>),
    GwSettled(usize, Result<u128, JobError>),
    ClientLeaves(usize),
    PxCancel(usize),
    PxStart(usize),
    PxRegistered(usize, Result<(), JobError>),
    PxPartBilled(usize, Res, Result<(), JobError>),
    PxAdmitted(usize, Result<Res, JobError>),
    PxFrame(usize, WorkerId, Frame),
    PxWorkerFailed(usize, WorkerId),
    PxClientGone(usize),
    PxBilled(usize, Result<(), JobError>),
    WkStart(usize, WorkerId),
    WkToken(usize, WorkerId, usize),
    WkSigned(usize, WorkerId, Result<JobEnd, String>),
    WkReset(usize, WorkerId),
    WkCancel(usize, WorkerId),
    /// A cancelled engine has stopped (within one batch).
    WkEngineStopped(usize, WorkerId),
}

struct Job {
    gw: GatewayFlow,
    px: Option<JobFlow<Res>>,
    wk: HashMap<WorkerId, WorkerFlow>,
    /// What the HTTP client received.
    text: String,
    answer: Option<Result<Option<u128>, ErrorCode>>,
    gw_outcome: Option<gw::Outcome>,
    px_outcome: Option<px::Outcome>,
    /// The client leaves after receiving this many text pieces…
    leave_after: Option<usize>,
    /// …by resetting its stream (a hostile or crashed client), not by a cancel.
    reset_on_leave: bool,
    emitted: usize,
}

#[derive(Default, Debug)]
struct Money {
    reserved: u64,
    reservations: u64,
    billed: u128,
    paid: u128,
    /// Costs of the (cumulative) receipts the workers signed, by (job, worker).
    signed: HashMap<(usize, WorkerId), Vec<u128>>,
    /// What each job was billed and paid.
    billed_by_job: HashMap<usize, u128>,
    paid_by_job: HashMap<usize, u128>,
}

struct World {
    now: Instant,
    queue: BTreeMap<(Instant, u64), Ev>,
    seq: u64,
    jobs: Vec<Job>,
    faults: HashMap<WorkerId, Fault>,
    dead: HashSet<WorkerId>,
    /// Router: workers and their running jobs.
    slots: BTreeMap<WorkerId, u32>,
    max_jobs: u32,
    tokens: usize,
    ledger_delay: Duration,
    ledger_fails: bool,
    credit: u64,
    money: Money,
    engines_running: HashSet<(usize, WorkerId)>,
    /// Tokens an engine computed after its job was over at the worker.
    tokens_wasted: usize,
    /// Attempts whose stream the proxy dropped.
    abandoned: HashSet<(usize, WorkerId)>,
    log: Vec<String>,
}

impl World {
    fn new(workers: &[Fault]) -> Self {
        Self {
            now: Instant::now(),
            queue: BTreeMap::new(),
            seq: 0,
            jobs: Vec::new(),
            faults: (0..).zip(workers.iter().copied()).collect(),
            dead: HashSet::new(),
            slots: (0..workers.len() as u64).map(|w| (w, 0)).collect(),
            max_jobs: 4,
            tokens: 5,
            ledger_delay: Duration::from_millis(2),
            ledger_fails: false,
            credit: 1_000_000,
            money: Money::default(),
            engines_running: HashSet::new(),
            abandoned: HashSet::new(),
            tokens_wasted: 0,
            log: Vec::new(),
        }
    }

    fn at(&mut self, after: Duration, ev: Ev) {
        self.seq += 1;
        self.queue.insert((self.now + after, self.seq), ev);
    }

    fn submit(&mut self, leave_after: Option<usize>) -> usize {
        let j = self.jobs.len();
        self.jobs.push(Job {
            gw: GatewayFlow::new(true, false),
            px: None,
            wk: HashMap::new(),
            text: String::new(),
            answer: None,
            gw_outcome: None,
            px_outcome: None,
            leave_after,
            reset_on_leave: false,
            emitted: 0,
        });
        self.gw_act(j);
        j
    }

    /// Runs until nothing is queued and no deadline is pending.
    fn run(&mut self) {
        for _ in 0..100_000 {
            let next_ev = self.queue.keys().next().map(|k| k.0);
            let next_timeout = self.next_timeout();
            let t = match (next_ev, next_timeout) {
                (None, None) => return,
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) | (None, Some(a)) => a,
            };
            self.now = self.now.max(t);
            if next_timeout.is_some_and(|d| d <= t) && next_ev.is_none_or(|e| e > t) {
                self.fire_timeouts();
            } else {
                let (_, ev) = self.queue.pop_first().expect("an event");
                self.deliver(ev);
            }
        }
        panic!("the simulation did not settle: {:?}", self.log);
    }

    fn next_timeout(&self) -> Option<Instant> {
        let px = self
            .jobs
            .iter()
            .filter_map(|j| j.px.as_ref()?.poll_timeout());
        let wk = self.jobs.iter().flat_map(|j| {
            j.wk.iter()
                .filter(|(w, _)| !self.dead.contains(w))
                .filter_map(|(_, f)| f.poll_timeout())
        });
        px.chain(wk).min()
    }

    fn fire_timeouts(&mut self) {
        let now = self.now;
        for j in 0..self.jobs.len() {
            if let Some(f) = self.jobs[j].px.as_mut() {
                f.handle_timeout(now);
            }
            self.px_act(j);
            let ws: Vec<WorkerId> = self.jobs[j].wk.keys().copied().collect();
            for w in ws {
                if self.dead.contains(&w) {
                    continue;
                }
                if let Some(f) = self.jobs[j].wk.get_mut(&w) {
                    f.handle_timeout(now);
                }
                self.wk_act(j, w);
            }
        }
    }

    fn deliver(&mut self, ev: Ev) {
        self.log.push(format!("{:?} {ev:?}", self.now));
        let now = self.now;
        match ev {
            Ev::GwAuthorised(j) => {
                self.jobs[j].gw.authorised(Ok(()));
                self.gw_act(j);
            }
            Ev::GwSubmitted(j) => {
                self.jobs[j].gw.submitted(Ok(()));
                self.gw_act(j);
            }
            Ev::GwEvent(j, e) => {
                self.jobs[j].gw.event(e);
                self.gw_act(j);
            }
            Ev::GwSettled(j, r) => {
                self.jobs[j].gw.settled(r);
                self.gw_act(j);
            }
            Ev::ClientLeaves(j) => {
                self.jobs[j].gw.client_gone();
                if self.jobs[j].reset_on_leave {
                    self.jobs[j].gw.stop_reading();
                    self.at(LINK, Ev::PxClientGone(j));
                }
                self.gw_act(j);
            }
            Ev::PxCancel(j) => {
                if let Some(f) = self.jobs[j].px.as_mut() {
                    f.cancel_requested(now);
                }
                self.px_act(j);
            }
            Ev::PxStart(j) => {
                let cfg = px::FlowConfig {
                    max_attempts: 3,
                    idle_timeout: PROXY_IDLE,
                    paid: true,
                    drain_timeout: DRAIN,
                };
                self.jobs[j].px = Some(JobFlow::new(cfg));
                self.px_act(j);
            }
            Ev::PxRegistered(j, r) => {
                self.px(j).registered(r);
                self.px_act(j);
            }
            Ev::PxPartBilled(j, res, r) => {
                self.px(j).part_billed(res, r);
                self.px_act(j);
            }
            Ev::PxAdmitted(j, r) => {
                self.px(j).admitted(r, now);
                self.px_act(j);
            }
            // A dropped stream yields nothing more: frames still in flight
            // from an abandoned attempt never reach the flow.
            Ev::PxFrame(j, w, _) | Ev::PxWorkerFailed(j, w) if self.abandoned.contains(&(j, w)) => {
            }
            Ev::PxFrame(j, _, f) => {
                self.px(j).frame(f, now);
                self.px_act(j);
            }
            Ev::PxWorkerFailed(j, _) => {
                self.px(j).worker_failed("the worker's link broke".into());
                self.px_act(j);
            }
            Ev::PxClientGone(j) => {
                if let Some(f) = self.jobs[j].px.as_mut() {
                    f.client_gone(now);
                }
                self.px_act(j);
            }
            Ev::PxBilled(j, r) => {
                self.px(j).billed(r);
                self.px_act(j);
            }
            Ev::WkStart(j, w) => self.worker_start(j, w),
            Ev::WkToken(j, w, i) => self.worker_token(j, w, i),
            Ev::WkSigned(j, w, r) => {
                if let Some(f) = self.jobs[j].wk.get_mut(&w) {
                    f.signed(r);
                }
                self.wk_act(j, w);
            }
            Ev::WkReset(j, w) => {
                if let Some(f) = self.jobs[j].wk.get_mut(&w) {
                    f.requester_gone();
                }
                self.wk_act(j, w);
            }
            Ev::WkCancel(j, w) => {
                if let Some(f) = self.jobs[j].wk.get_mut(&w) {
                    f.cancel_requested();
                }
                self.wk_act(j, w);
            }
            Ev::WkEngineStopped(j, w) => {
                if let Some(f) = self.jobs[j].wk.get_mut(&w) {
                    f.engine_done(Err(JobError::new(ErrorCode::Cancelled, "stopped")));
                }
                self.wk_act(j, w);
            }
        }
    }

    fn px(&mut self, j: usize) -> &mut JobFlow<Res> {
        self.jobs[j].px.as_mut().expect("proxy flow started")
    }

    // ---- the gateway's shell ----

    fn gw_act(&mut self, j: usize) {
        while let Some(a) = self.jobs[j].gw.poll_action() {
            match a {
                gw::Action::Authorise => self.at(Duration::from_micros(50), Ev::GwAuthorised(j)),
                gw::Action::Submit => {
                    self.at(LINK, Ev::PxStart(j));
                    self.at(LINK, Ev::GwSubmitted(j));
                }
                gw::Action::Emit(t) => {
                    let job = &mut self.jobs[j];
                    job.text.push_str(&t);
                    job.emitted += 1;
                    if job.leave_after == Some(job.emitted) {
                        self.at(Duration::ZERO, Ev::ClientLeaves(j));
                    }
                }
                gw::Action::Settle { receipt, delivered } => {
                    let r = self.settle(j, receipt.as_deref(), delivered.frames);
                    self.at(Duration::from_micros(300), Ev::GwSettled(j, r));
                }
                gw::Action::Cancel => self.at(LINK, Ev::PxCancel(j)),
                gw::Action::Answer { cost, .. } => self.jobs[j].answer = Some(Ok(cost)),
                gw::Action::Fail(e) => self.jobs[j].answer = Some(Err(e.code)),
                gw::Action::Finish(o) => self.jobs[j].gw_outcome = Some(o),
            }
        }
    }

    /// The gateway pays what a receipt the worker signed says, and only if
    /// it does not claim more text than was delivered.
    fn settle(
        &mut self,
        j: usize,
        receipt: Option<&ReceiptEnvelope>,
        delivered: u64,
    ) -> Result<u128, JobError> {
        let rejected = || JobError::new(ErrorCode::ReceiptRejected, "receipt does not match");
        let r = &receipt.ok_or_else(rejected)?.receipt.body;
        let cost = r.cost;
        let signed = self
            .money
            .signed
            .iter()
            .any(|((sj, _), c)| *sj == j && c.contains(&cost));
        if !signed || r.usage.completion > delivered + 1 {
            return Err(rejected());
        }
        self.money.paid += cost;
        *self.money.paid_by_job.entry(j).or_default() += cost;
        Ok(cost)
    }

    // ---- the proxy's shell ----

    fn px_act(&mut self, j: usize) {
        let now = self.now;
        while let Some(a) = self.jobs[j].px.as_mut().and_then(|f| f.poll_action()) {
            match a {
                // A books commit: the ledger is read only for a channel the
                // proxy has never seen, and every job here shares one.
                px::Action::Register => {
                    self.at(Duration::from_micros(50), Ev::PxRegistered(j, Ok(())));
                }
                px::Action::Pick { exclude } => {
                    let r = self.pick(&exclude);
                    self.px(j).picked(r, now);
                }
                px::Action::Admit { .. } => {
                    let r = if self.ledger_fails {
                        Err(JobError::new(ErrorCode::Unavailable, "ledger unreachable"))
                    } else {
                        let amount = 1_000;
                        if self.money.reserved + amount > self.credit {
                            Err(JobError::new(ErrorCode::PaymentRequired, "over credit"))
                        } else {
                            self.money.reserved += amount;
                            self.money.reservations += 1;
                            Ok(Res { job: j, amount })
                        }
                    };
                    self.at(self.ledger_delay, Ev::PxAdmitted(j, r));
                }
                px::Action::Send { worker } => self.at(LINK, Ev::WkStart(j, worker)),
                px::Action::Cancel { worker } => self.at(LINK, Ev::WkCancel(j, worker)),
                px::Action::Abandon { worker } => {
                    self.abandoned.insert((j, worker));
                    self.at(LINK, Ev::WkReset(j, worker));
                }
                px::Action::Forward(f) => {
                    let ev = match f {
                        Frame::Data(b) => {
                            let c: Chunk = serde_json::from_slice(&b).expect("a chunk");
                            Some(Ok(gw::Event::Text(c.text, b.len())))
                        }
                        Frame::End(end) => Some(Ok(gw::Event::End(end))),
                        Frame::Receipt(r) => Some(Ok(gw::Event::Receipt(r))),
                        Frame::Error(e) => Some(Err(e)),
                    };
                    self.at(LINK, Ev::GwEvent(j, ev));
                }
                px::Action::Bill {
                    worker,
                    reservation,
                    receipt,
                    delivered,
                } => {
                    let r = self.bill(j, worker, reservation, receipt.as_deref(), delivered.frames);
                    self.at(Duration::from_micros(300), Ev::PxBilled(j, r));
                }
                px::Action::BillPart {
                    worker,
                    reservation,
                    receipt,
                    delivered,
                } => {
                    let r =
                        self.bill_up_to(j, worker, &reservation, Some(&receipt), delivered.frames);
                    self.at(
                        Duration::from_micros(300),
                        Ev::PxPartBilled(j, reservation, r),
                    );
                }
                px::Action::Release(r) => self.release(r),
                px::Action::Unroute { worker } => {
                    *self.slots.get_mut(&worker).expect("a routed worker") -= 1;
                }
                px::Action::Finish(o) => self.jobs[j].px_outcome = Some(o),
            }
        }
    }

    fn pick(&mut self, exclude: &[WorkerId]) -> Result<WorkerId, RouteError> {
        let free = self
            .slots
            .iter()
            .filter(|(w, n)| !exclude.contains(w) && !self.dead.contains(w) && **n < self.max_jobs)
            .min_by_key(|(w, n)| (**n, **w))
            .map(|(w, _)| *w);
        let w = free.ok_or(RouteError::AllBusy)?;
        *self.slots.get_mut(&w).expect("listed") += 1;
        Ok(w)
    }

    fn bill(
        &mut self,
        j: usize,
        w: WorkerId,
        r: Res,
        receipt: Option<&ReceiptEnvelope>,
        relayed: u64,
    ) -> Result<(), JobError> {
        let billed = self.bill_up_to(j, w, &r, receipt, relayed);
        self.release(r);
        billed
    }

    /// Bills a job up to `receipt` (cumulative: only the increase counts),
    /// if its worker signed it, it fits the reservation, and it claims no
    /// more tokens than the `relayed` pieces allow (the gateway's rule).
    fn bill_up_to(
        &mut self,
        j: usize,
        w: WorkerId,
        r: &Res,
        receipt: Option<&ReceiptEnvelope>,
        relayed: u64,
    ) -> Result<(), JobError> {
        let cost = receipt.map_or(u128::MAX, |e| e.receipt.body.cost);
        let signed = self
            .money
            .signed
            .get(&(j, w))
            .is_some_and(|c| c.contains(&cost));
        let claimed = receipt.map_or(0, |e| e.receipt.body.usage.completion);
        if !signed || cost > u128::from(r.amount) || claimed > relayed + 1 {
            return Err(JobError::new(ErrorCode::ReceiptRejected, "not billed"));
        }
        assert_eq!(r.job, j, "a reservation billed for another job");
        let so_far = self.money.billed_by_job.entry(j).or_default();
        let delta = cost.saturating_sub(*so_far);
        *so_far += delta;
        self.money.billed += delta;
        Ok(())
    }

    fn release(&mut self, r: Res) {
        self.money.reserved -= r.amount;
    }

    // ---- the worker's shell ----

    fn worker_start(&mut self, j: usize, w: WorkerId) {
        if self.dead.contains(&w) {
            return;
        }
        match self.faults[&w] {
            Fault::GoneBeforeFirstByte => return self.worker_dies(j, w),
            Fault::Silent => return,
            _ => {}
        }
        let cfg = wk::FlowConfig {
            paid: true,
            engine_idle_timeout: ENGINE_IDLE,
            receipt_every_tokens: RECEIPT_EVERY,
            receipt_every: Duration::from_secs(3600),
        };
        self.jobs[j]
            .wk
            .insert(w, WorkerFlow::new(cfg, self.now, None));
        self.engines_running.insert((j, w));
        self.at(TOKEN_EVERY, Ev::WkToken(j, w, 0));
    }

    fn worker_token(&mut self, j: usize, w: WorkerId, i: usize) {
        if self.dead.contains(&w) || !self.engines_running.contains(&(j, w)) {
            return;
        }
        if self.faults[&w] == Fault::GoneAfter(i) {
            return self.worker_dies(j, w);
        }
        let now = self.now;
        let flow = self.jobs[j].wk.get_mut(&w).expect("a running job");
        if flow.is_done() {
            // The job is over at the worker, yet its engine still computes.
            self.tokens_wasted += 1;
        }
        if i < self.tokens {
            flow.text(format!("t{i} "), usage(i + 1), now);
            self.at(TOKEN_EVERY, Ev::WkToken(j, w, i + 1));
        } else {
            self.engines_running.remove(&(j, w));
            flow.engine_done(Ok(JobEnd {
                usage: Usage {
                    prompt_tokens: 10,
                    completion_tokens: self.tokens as u32,
                },
                finish_reason: FinishReason::Stop,
                receipt: None,
            }));
        }
        self.wk_act(j, w);
    }

    fn worker_dies(&mut self, j: usize, w: WorkerId) {
        self.dead.insert(w);
        self.engines_running.retain(|(_, ew)| *ew != w);
        self.at(LINK, Ev::PxWorkerFailed(j, w));
    }

    fn wk_act(&mut self, j: usize, w: WorkerId) {
        while let Some(a) = self.jobs[j].wk.get_mut(&w).and_then(|f| f.poll_action()) {
            match a {
                wk::Action::Send(f) => self.at(LINK, Ev::PxFrame(j, w, f)),
                wk::Action::SendReceipt(u) => {
                    let env = self.sign(j, w, u);
                    self.at(LINK, Ev::PxFrame(j, w, Frame::Receipt(env)));
                }
                wk::Action::Sign(mut end) => {
                    let r = if self.faults[&w] == Fault::SignFails {
                        Err("disk full".to_string())
                    } else {
                        end.receipt = Some(self.sign(j, w, end.usage));
                        Ok(end)
                    };
                    self.at(Duration::from_micros(300), Ev::WkSigned(j, w, r));
                }
                wk::Action::CancelEngine => {
                    // A cancel (not a reset) waits for the engine to stop.
                    let waits = self.jobs[j].wk.get(&w).is_some_and(|f| !f.is_done());
                    if self.engines_running.remove(&(j, w)) && waits {
                        self.at(TOKEN_EVERY, Ev::WkEngineStopped(j, w));
                    }
                }
                wk::Action::Finish(_) => {}
            }
        }
    }

    /// A worker's receipt for `u` so far (a real one is signed by its
    /// attested key; here the record of what it signed is the signature).
    fn sign(&mut self, j: usize, w: WorkerId, u: Usage) -> Box<ReceiptEnvelope> {
        let body = Receipt {
            request: Hash32::of(j.to_string().as_bytes()),
            model: Hash32([0; 32]),
            usage: TokenUsage {
                prompt: u.prompt_tokens.into(),
                completion: u.completion_tokens.into(),
                ..Default::default()
            },
            price_milli: 1000,
            cost: cost_of(u),
        };
        self.money.signed.entry((j, w)).or_default().push(body.cost);
        Box::new(ReceiptEnvelope {
            receipt: Signed {
                body,
                signature: Signature([0; 64]),
            },
            cert: String::new(),
        })
    }

    /// What must hold after every run, whatever the faults.
    fn check_money_and_slots(&self) {
        assert_eq!(self.money.reserved, 0, "credit left reserved");
        // A client pays what it received: at most one receipt behind what
        // the proxy billed (a receipt, or the End, in flight when the job
        // broke off; the first one carries the prompt), never more.
        let one_receipt = cost_of(usage(RECEIPT_EVERY as usize));
        for (j, billed) in &self.money.billed_by_job {
            let paid = self.money.paid_by_job.get(j).copied().unwrap_or(0);
            assert!(paid <= *billed, "job {j}: paid {paid} > billed {billed}");
            assert!(
                billed - paid <= one_receipt,
                "job {j}: billed {billed}, paid {paid}: more than one receipt unpaid"
            );
        }
        // No output delivered to a client is left unbilled beyond one
        // receipt interval.
        for (j, job) in self.jobs.iter().enumerate() {
            let billed = self.money.billed_by_job.get(&j).copied().unwrap_or(0);
            let tokens_billed = billed.saturating_sub(10) / 10;
            assert!(
                job.emitted as u128 <= tokens_billed + u128::from(RECEIPT_EVERY),
                "job {j}: {} tokens delivered, {tokens_billed} billed",
                job.emitted
            );
        }
        assert!(
            self.money
                .paid_by_job
                .keys()
                .all(|j| self.money.billed_by_job.contains_key(j)),
            "paid for a job the proxy never billed"
        );
        let signed: u128 = self
            .money
            .signed
            .values()
            .map(|c| c.iter().max().copied().unwrap_or(0))
            .sum();
        assert!(
            self.money.billed <= signed,
            "billed more than workers signed"
        );
        assert!(
            self.engines_running.is_empty(),
            "an engine still runs: {:?}",
            self.engines_running
        );
        assert_eq!(
            self.tokens_wasted, 0,
            "engines kept computing for jobs that were over"
        );
        assert!(
            self.slots.values().all(|n| *n == 0),
            "router slots held: {:?}",
            self.slots
        );
        for (i, j) in self.jobs.iter().enumerate() {
            assert!(j.gw.is_done(), "job {i}: gateway flow not done");
            assert!(
                j.px.as_ref().is_none_or(|f| f.is_done()),
                "job {i}: proxy flow not done"
            );
            for (w, f) in &j.wk {
                assert!(
                    self.dead.contains(w) || f.is_done(),
                    "job {i}: worker {w} flow not done"
                );
            }
        }
    }

    fn elapsed(&self, since: Instant) -> Duration {
        self.now - since
    }
}

fn cost_of(u: Usage) -> u128 {
    u128::from(u.prompt_tokens) + u128::from(u.completion_tokens) * 10
}

fn usage(completion: usize) -> Usage {
    Usage {
        prompt_tokens: 10,
        completion_tokens: completion as u32,
    }
}

/// Workers sign a cumulative receipt every this many tokens.
const RECEIPT_EVERY: u32 = 2;

const FULL_TEXT: &str = "t0 t1 t2 t3 t4 ";

#[test]
fn a_job_completes_and_every_party_agrees_on_the_money() {
    let mut w = World::new(&[Fault::None]);
    let j = w.submit(None);
    w.run();
    w.check_money_and_slots();
    let job = &w.jobs[j];
    assert_eq!(job.text, FULL_TEXT);
    assert_eq!(job.answer, Some(Ok(Some(60))));
    assert_eq!(job.px_outcome, Some(px::Outcome::Ok));
    assert_eq!(w.money.paid, 60);
}

#[test]
fn worker_gone_before_its_first_byte_is_replaced_and_only_the_second_is_paid() {
    let mut w = World::new(&[Fault::GoneBeforeFirstByte, Fault::None]);
    let j = w.submit(None);
    w.run();
    w.check_money_and_slots();
    assert_eq!(w.jobs[j].text, FULL_TEXT);
    assert_eq!(w.money.billed, 60);
    assert_eq!(w.money.reservations, 2, "one reservation per attempt");
    assert!(w.money.signed.keys().all(|(_, wid)| *wid == 1));
}

#[test]
fn worker_gone_mid_stream_bills_the_output_up_to_its_last_receipt() {
    let mut w = World::new(&[Fault::GoneAfter(2), Fault::None]);
    let j = w.submit(None);
    w.run();
    w.check_money_and_slots();
    let job = &w.jobs[j];
    assert_eq!(job.text, "t0 t1 ", "what was delivered stays delivered");
    assert_eq!(job.answer, Some(Err(ErrorCode::WorkerFailedMidStream)));
    // Its receipt after 2 tokens: the prompt (10) and 2 tokens (2·10).
    assert_eq!((w.money.billed, w.money.paid), (30, 30));
}

#[test]
fn a_silent_worker_is_given_up_at_the_proxy_deadline_and_replaced() {
    let mut w = World::new(&[Fault::Silent, Fault::None]);
    let t0 = w.now;
    let j = w.submit(None);
    w.run();
    w.check_money_and_slots();
    assert_eq!(w.jobs[j].text, FULL_TEXT);
    assert_eq!(w.money.paid, 60);
    let took = w.elapsed(t0);
    assert!(
        took >= PROXY_IDLE && took < PROXY_IDLE + Duration::from_secs(1),
        "{took:?}"
    );
}

#[test]
fn client_gone_mid_stream_stops_the_engine_and_pays_what_it_received() {
    let mut w = World::new(&[Fault::None]);
    let j = w.submit(Some(2));
    w.run();
    w.check_money_and_slots();
    let job = &w.jobs[j];
    assert_eq!(job.gw_outcome, Some(gw::Outcome::Cancelled));
    assert_eq!(job.px_outcome, Some(px::Outcome::Cancelled));
    // Leaving cancels the job: the engine stops within a token, the
    // gateway reads the stream to its end and pays the worker's last
    // receipt, so every party agrees on the money.
    assert_eq!(job.text, "t0 t1 ", "nothing reaches a client that left");
    assert!(w.money.billed >= 30, "the 2 tokens read are paid for");
    assert_eq!(w.money.paid, w.money.billed);
}

#[test]
fn a_client_that_resets_its_stream_is_billed_only_what_was_relayed_to_it() {
    let mut w = World::new(&[Fault::None]);
    let j = w.submit(Some(2));
    w.jobs[j].reset_on_leave = true;
    w.run();
    w.check_money_and_slots();
    assert_eq!(w.jobs[j].px_outcome, Some(px::Outcome::Cancelled));
    // The receipt after 2 tokens was billed before it was relayed; it
    // reached the gateway after its client left, so the proxy carries it
    // (exposure, within the credit limit). Nothing the worker made after
    // the client left is billed.
    assert_eq!(w.money.billed, 30);
    assert!(w.money.paid <= w.money.billed);
}

#[test]
fn a_failing_ledger_refuses_the_job_before_any_work() {
    let mut w = World::new(&[Fault::None]);
    w.ledger_fails = true;
    let j = w.submit(None);
    w.run();
    w.check_money_and_slots();
    assert_eq!(w.jobs[j].answer, Some(Err(ErrorCode::Unavailable)));
    assert!(w.jobs[j].wk.is_empty(), "no worker ran it");
    assert_eq!(w.money.reservations, 0);
}

#[test]
fn a_slow_ledger_delays_admission_by_its_delay_and_nothing_else() {
    let mut w = World::new(&[Fault::None]);
    w.ledger_delay = Duration::from_secs(5);
    let t0 = w.now;
    let a = w.submit(None);
    let b = w.submit(None);
    w.run();
    w.check_money_and_slots();
    assert_eq!(w.money.paid, 120);
    for j in [a, b] {
        assert_eq!(w.jobs[j].text, FULL_TEXT);
    }
    // Both admitted concurrently: 5 s once, not 5 s per job in a queue.
    let took = w.elapsed(t0);
    assert!(took < Duration::from_secs(6), "{took:?}");
}

#[test]
fn a_final_receipt_that_cannot_be_recorded_leaves_the_last_signed_one_billed() {
    let mut w = World::new(&[Fault::SignFails]);
    let j = w.submit(None);
    w.run();
    w.check_money_and_slots();
    assert_eq!(w.jobs[j].answer, Some(Err(ErrorCode::EngineFailed)));
    // 4 of the 5 tokens were covered by a receipt before the end: 10 + 4·10.
    assert_eq!((w.money.billed, w.money.paid), (50, 50));
}

#[test]
fn more_jobs_than_slots_are_refused_busy_and_hold_nothing() {
    let mut w = World::new(&[Fault::None]);
    w.max_jobs = 2;
    let jobs: Vec<usize> = (0..4).map(|_| w.submit(None)).collect();
    w.run();
    w.check_money_and_slots();
    let ok = jobs
        .iter()
        .filter(|j| w.jobs[**j].answer == Some(Ok(Some(60))))
        .count();
    let busy = jobs
        .iter()
        .filter(|j| w.jobs[**j].answer == Some(Err(ErrorCode::Busy)))
        .count();
    assert_eq!((ok, busy), (2, 2));
    assert_eq!(w.money.paid, 120);
}

#[test]
fn every_fault_at_every_point_keeps_the_money_straight() {
    let faults = [
        Fault::None,
        Fault::GoneBeforeFirstByte,
        Fault::Silent,
        Fault::SignFails,
        Fault::GoneAfter(0),
        Fault::GoneAfter(3),
        Fault::GoneAfter(5),
    ];
    for a in faults {
        for b in faults {
            for (leave, reset) in [
                (None, false),
                (Some(1), false),
                (Some(5), false),
                (Some(1), true),
                (Some(3), true),
            ] {
                let mut w = World::new(&[a, b]);
                let j = w.submit(leave);
                w.jobs[j].reset_on_leave = reset;
                w.run();
                w.check_money_and_slots();
                let job = &w.jobs[j];
                if let Some(Ok(Some(cost))) = job.answer {
                    assert_eq!(cost, 60, "{a:?} {b:?} {leave:?} {reset}");
                    assert_eq!(job.text, FULL_TEXT, "{a:?} {b:?} {leave:?} {reset}");
                }
            }
        }
    }
}
