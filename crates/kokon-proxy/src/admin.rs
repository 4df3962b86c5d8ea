//! Plain-HTTP admin endpoints: `/metrics` (Prometheus), `/healthz`, and
//! `/certificate` (this node's current RA-TLS certificate, PEM).

use std::sync::Arc;

use axum::Router;
use axum::extract::State as AxState;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::State;

pub(crate) async fn serve(listener: TcpListener, state: Arc<State>, shutdown: CancellationToken) {
    let app = Router::new()
        .route(
            "/metrics",
            get(|AxState(s): AxState<Arc<State>>| async move { s.metrics.encode() }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/certificate",
            get(
                |AxState(s): AxState<Arc<State>>| async move { s.tls.identity().certificate_pem() },
            ),
        )
        .with_state(state.clone());
    kokon_link::serve_public(listener, app, state.cfg.admin, shutdown).await;
}
