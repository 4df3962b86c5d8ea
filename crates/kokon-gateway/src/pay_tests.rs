//! A proxy offering bills on reconcile is trusted with nothing: the
//! gateway pays only its own jobs' receipts signed by an attested worker
//! within what it signed, each once.

use std::sync::Arc;

use kokon_attest::{Registry, Role};
use kokon_money::message::Signable;
use kokon_money::receipt::Budget;
use kokon_money::{Address, Hash32, PriceTable, Receipt, SecretKey, Signature, Signed, TokenUsage};
use kokon_pay::books::client::ClientBooks;
use kokon_proto::{AuthScope, BilledJob, JobAuth, JobHeader, JobKind, Payment, ReceiptEnvelope};

use super::{ClientPay, NotPaid, check_billed};

const BUDGET: Budget = Budget {
    prompt: 100,
    completion: 50,
};

struct Fixture {
    pay: ClientPay,
    client: SecretKey,
    channel: Address,
    worker: kokon_tls::RaTls,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let channel = Address::new(0, [9; 32]);
    let client = SecretKey::from_bytes([1; 32]);
    let books = ClientBooks::open(
        &dir.path().join("client.db"),
        SecretKey::from_bytes([1; 32]),
        channel,
        1_000_000_000,
    )
    .unwrap();
    let policy = Arc::new(Registry::local_test_network().policy().unwrap());
    let mut node = kokon_tls::node::NodeParams::simulated(Role::Worker, None, [0; 32]);
    node.engine = Some(kokon_proto::EngineDecl::local(
        kokon_proto::EngineKind::Echo,
    ));
    let worker = kokon_tls::node::start_node(node, policy.clone(), &Default::default()).unwrap();
    Fixture {
        pay: ClientPay::new(books, PriceTable::default(), policy, None),
        client,
        channel,
        worker,
        _dir: dir,
    }
}

fn usage(prompt: u64, completion: u64) -> TokenUsage {
    TokenUsage {
        prompt,
        completion,
        ..Default::default()
    }
}

impl Fixture {
    /// The authorisation `key` signs for job `id` on `channel`.
    fn auth(&self, key: &SecretKey, channel: Address, id: &str) -> JobAuth {
        let mut h = JobHeader {
            request_id: id.into(),
            model: "echo".into(),
            kind: JobKind::Chat,
            max_price_milli: Some(1500),
            budget: Some(BUDGET),
            payment: None,
            credit: None,
            sealed: false,
        };
        let scope = AuthScope::new(channel, b"payload", 4_000_000_000);
        h.payment = Some(Payment {
            channel,
            expires_unix: scope.expires_unix,
            signature: key.sign(&h.auth_hash(BUDGET, &scope)),
        });
        JobAuth::of(&h, b"payload").unwrap()
    }

    /// The attested worker's receipt for `id`.
    fn receipt(&self, id: &str, usage: TokenUsage, price_milli: u32) -> ReceiptEnvelope {
        let cost = PriceTable::default()
            .cost("echo", &usage, price_milli)
            .unwrap();
        let body = Receipt {
            request: Hash32::of(id.as_bytes()),
            model: Hash32([7; 32]),
            usage,
            price_milli,
            cost,
        };
        let (sig, cert) = self
            .worker
            .identity()
            .sign(&body.signing_hash().unwrap())
            .unwrap();
        ReceiptEnvelope {
            receipt: Signed {
                body,
                signature: Signature(sig),
            },
            cert: hex::encode(cert),
        }
    }

    fn own(&self, id: &str, usage: TokenUsage) -> BilledJob {
        BilledJob {
            auth: self.auth(&self.client, self.channel, id),
            receipt: self.receipt(id, usage, 1000),
        }
    }

    async fn check(&self, job: &BilledJob) -> Result<u128, NotPaid> {
        let books = self.pay.books().await;
        check_billed(&books, &self.pay, job, now()).map(|(_, cost)| cost)
    }

    async fn pay(&self, job: &BilledJob) {
        let (worker, cost) = {
            let books = self.pay.books().await;
            check_billed(&books, &self.pay, job, now()).unwrap()
        };
        let paid =
            self.pay
                .books()
                .await
                .pay(&job.auth.request_id, &worker, &job.receipt.receipt, cost);
        paid.unwrap().wait().await.unwrap();
    }
}

fn now() -> u64 {
    use kokon_attest::Clock as _;
    kokon_attest::SystemClock.now_unix()
}

fn refused(r: Result<u128, NotPaid>) -> String {
    match r {
        Err(NotPaid::Refused(why)) => why,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn its_own_job_is_paid_once_and_a_later_receipt_only_its_increase() {
    let f = fixture();
    let job = f.own("mine", usage(10, 5));
    let cost = f.check(&job).await.expect("an honest bill is paid");
    f.pay(&job).await;
    assert_eq!(f.pay.books().await.channel().spent, cost);
    assert_eq!(f.check(&job).await, Err(NotPaid::Paid), "never twice");
    // The proxy billed a later, larger receipt of the same job (its End).
    let more = f.own("mine", usage(10, 20));
    let total = f.check(&more).await.expect("the larger receipt");
    f.pay(&more).await;
    assert_eq!(f.pay.books().await.channel().spent, total, "cumulative");
}

#[tokio::test]
async fn a_job_this_client_did_not_sign_is_not_its_to_pay() {
    let f = fixture();
    let stranger = SecretKey::from_bytes([5; 32]);
    let mut job = f.own("theirs", usage(10, 5));
    job.auth = f.auth(&stranger, f.channel, "theirs");
    assert_eq!(f.check(&job).await, Err(NotPaid::NotOurs));
    // Its own key, for another channel.
    job.auth = f.auth(&f.client, Address::new(0, [4; 32]), "theirs");
    assert_eq!(f.check(&job).await, Err(NotPaid::NotOurs));
    // Its own authorisation, edited (a larger budget).
    job.auth = f.auth(&f.client, f.channel, "theirs");
    job.auth.completion_tokens += 1000;
    assert_eq!(f.check(&job).await, Err(NotPaid::NotOurs));
    assert_eq!(f.pay.books().await.channel().spent, 0, "nothing paid");
}

#[tokio::test]
async fn a_receipt_that_does_not_hold_against_the_authorisation_is_refused() {
    let f = fixture();
    let over = f.own("over", usage(10, BUDGET.completion + 1));
    assert!(refused(f.check(&over).await).contains("generated tokens"));
    let pricier = BilledJob {
        auth: f.auth(&f.client, f.channel, "pricier"),
        receipt: f.receipt("pricier", usage(10, 5), 1600),
    };
    assert!(refused(f.check(&pricier).await).contains("price"));
    let mut edited = f.own("edited", usage(10, 5));
    edited.receipt.receipt.body.cost *= 10;
    refused(f.check(&edited).await);
    // Another job's receipt spliced onto this authorisation.
    let spliced = BilledJob {
        auth: f.auth(&f.client, f.channel, "a"),
        receipt: f.receipt("b", usage(10, 5), 1000),
    };
    refused(f.check(&spliced).await);
    // Signed by a key the certificate does not vouch for.
    let mut forged = f.own("forged", usage(10, 5));
    forged.receipt.receipt =
        Signed::sign(forged.receipt.receipt.body, &SecretKey::from_bytes([6; 32])).unwrap();
    refused(f.check(&forged).await);
    // No attested certificate at all.
    let mut bare = f.own("bare", usage(10, 5));
    bare.receipt.cert = "00".into();
    refused(f.check(&bare).await);
    assert_eq!(f.pay.books().await.channel().spent, 0, "nothing paid");
}

#[tokio::test]
async fn a_receipt_refused_when_it_came_is_refused_when_offered_again() {
    let f = fixture();
    let job = f.own("refused-before", usage(10, 5));
    f.pay.books().await.refuse("refused-before").unwrap();
    assert!(refused(f.check(&job).await).contains("refused when it was received"));
}

#[tokio::test]
async fn a_receipt_signed_by_a_worker_that_did_not_answer_is_not_paid() {
    let f = fixture();
    let env = f.receipt("sealed-1", usage(10, 0), 1000);
    let signer = kokon_attest::sha256(&hex::decode(&env.cert).unwrap());
    let header = JobHeader {
        request_id: "sealed-1".into(),
        model: "echo".into(),
        kind: JobKind::Chat,
        max_price_milli: Some(1500),
        budget: Some(BUDGET),
        payment: None,
        credit: None,
        sealed: true,
    };
    let auth = super::Authorised {
        budget: BUDGET,
        policy: f.pay.policy(),
    };
    // The job sealed to `id` alone (no chunk opened yet: any candidate may have run it).
    let reader = |id: [u8; 32]| {
        let c = kokon_seal::Candidate {
            id,
            public: kokon_seal::WorkerKey::generate().public(),
        };
        let (_, client) = kokon_seal::seal_job(&[c], &header.binding(), b"job").unwrap();
        client.reader()
    };
    let pay = Arc::new(f.pay);
    let meter = || kokon_proto::OutputMeter::for_job(true);
    let spent = || async { pay.books().await.channel().spent };

    // A proxy hands the receipt of another attested worker for this job:
    // refused, nothing paid.
    let other = reader([5; 32]);
    let r = super::settle(&pay, (&header, &auth, Some(&other)), Some(&env), meter()).await;
    let e = r.unwrap_err();
    assert_eq!(e.code, kokon_proto::ErrorCode::ReceiptRejected);
    assert!(e.message.contains("did not answer"), "{}", e.message);
    assert_eq!(spent().await, 0);

    // Signed by the candidate the job was sealed to: paid its cost.
    let own = reader(signer);
    let cost = super::settle(&pay, (&header, &auth, Some(&own)), Some(&env), meter())
        .await
        .unwrap();
    assert!(cost > 0);
    assert_eq!(spent().await, cost);
}

#[tokio::test]
async fn a_billed_job_is_judged_by_the_registry_it_was_signed_under() {
    let mut f = fixture();
    let (registry, policy) = tokio::sync::watch::channel(f.pay.policy());
    f.pay.follow(policy);
    f.pay.judged_under("before", &f.pay.policy());
    // The registry then revokes the worker's image.
    let mut revoked = Registry::local_test_network();
    revoked.worker_images = vec!["00".repeat(32)];
    registry.send_replace(Arc::new(revoked.policy().unwrap()));
    // Work signed for before the revocation is paid…
    assert!(f.check(&f.own("before", usage(10, 5))).await.is_ok());
    // …and a job it does not know (signed by an earlier process, or
    // never) is judged by the registry in force: refused, nothing paid.
    let why = refused(f.check(&f.own("unknown", usage(10, 5))).await);
    assert!(why.contains("image"), "{why}");
}
