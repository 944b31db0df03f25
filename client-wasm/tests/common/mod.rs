//! Helpers shared by the browser test files (`probe.rs`, `game.rs`, `session.rs`,
//! `handover.rs`).

pub mod kept;

use std::future::Future;

use futures::future::{self, Either};
use gloo_timers::future::TimeoutFuture;
/// Runs `f`, failing the test when it takes longer than `ms`.
pub async fn within<F: Future>(ms: u32, what: &str, f: F) -> F::Output {
    let f = Box::pin(f);
    match future::select(f, TimeoutFuture::new(ms)).await {
        Either::Left((out, _)) => out,
        Either::Right(_) => panic!("{what} did not finish within {ms} ms"),
    }
}
