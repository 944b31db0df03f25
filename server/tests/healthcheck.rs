//! `pairlab healthcheck` against a real server: healthy while the record is written, not
//! healthy (with the reason) while it cannot be.

mod common;

use std::time::Duration;

use common::*;
use pairlab_server::healthcheck::{check, HealthError};

#[tokio::test]
async fn healthy_server_then_a_record_that_cannot_be_written() {
    let server = TestServer::start().await;
    check(server.addr, Duration::from_secs(5))
        .await
        .expect("a fresh server is healthy");

    // The `probe` scene's folder is a file: its record cannot be written.
    let data_dir = tempfile::tempdir().unwrap();
    std::fs::write(data_dir.path().join("probe"), b"not a folder").unwrap();
    let broken = TestServer::with_data_dir(TEST_CONFIG, data_dir).await;
    let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
    let err = loop {
        match check(broken.addr, Duration::from_secs(5)).await {
            Err(e) => break e,
            Ok(()) => {
                assert!(tokio::time::Instant::now() < deadline, "never degraded");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    assert!(matches!(err, HealthError::Degraded(_)), "{err}");
    assert!(err.to_string().contains("cannot be written"), "{err}");
}
