//! A researcher's own experiment over real WebSockets: game settings and pair RTTs in
//! `game_start`, outcomes (finish, leave, waitroom timeout, partner lost, entry refused),
//! `record` and `attention` lines, one participation per subject across a restart; and over
//! HTTP: the site folder, `/<subject_id>`, CORS on the client helper.

mod common;

use common::*;
use pairlab_server::record::events_of;
use pairlab_shared::{
    Attention, BrowserCheck, ClientMessage, ErrorCode, Finish, Hello, Outcome, RecordEvent,
    RecruiterParams, ServerMessage,
};
use ResearchEventKind as Ev;

const STUDY: &str = r#"
[[scene]]
id = "study"
group_size = 2
matchmaker = "fifo"
leave_button_after_ms = 30000

[scene.game]
tick_ms = 50
episodes = 2
max_hidden_ms = 300

[scene.game.settings]
arena = "forest"
speeds = [1, 2.5]

[scene.outcomes.completed]
url = "https://app.prolific.com/submissions/complete?cc={completion_code}&s={study_id}&p={subject_id}"
code = "C0MPLETE"

[scene.outcomes.partner_lost]
code = "LOST"

[scene.outcomes.waitroom_timeout]
url = "https://example.org/timeout/{subject_id}"

[[scene]]
id = "probe"
group_size = 2
matchmaker = "latency_fifo"
max_server_rtt_ms = 1000
max_p2p_rtt_ms = 50
probe_timeout_ms = 3000

[[scene]]
id = "short"
group_size = 2
matchmaker = "fifo"
waitroom_timeout_ms = 300

[scene.outcomes.waitroom_timeout]
url = "https://example.org/timeout?who={subject_id}"
code = "TIMEOUT1"

[[scene]]
id = "strict"
group_size = 2
matchmaker = "fifo"
max_entry_server_rtt_ms = 0.001
"#;

fn hello_with(
    subject: &str,
    scene: &str,
    recruiter: Option<RecruiterParams>,
    browser: Option<BrowserCheck>,
) -> ClientMessage {
    ClientMessage::Hello(Hello {
        subject_id: sid(subject),
        scene_id: Some(scene.into()),
        resume_token: None,
        link_signature: None,
        recruiter: recruiter.map(Box::new),
        browser,
    })
}

fn finish(outcome: &str) -> ClientMessage {
    ClientMessage::Finish(Finish {
        outcome: outcome.into(),
    })
}

async fn expect_outcome(c: &mut Client) -> pairlab_shared::Outcome {
    c.until("outcome", |m| match m {
        ServerMessage::Outcome(o) => Some(o.clone()),
        _ => None,
    })
    .await
}

/// Two members play; one finishes (outcome with its code and filled URL, closed), the other is
/// told nothing and finishes later; the game ends as `finished`. Both are done after a restart.
#[tokio::test]
async fn finishing_members_and_a_restart() {
    let mut server = TestServer::with_config(STUDY).await;
    let mut a = server.connect().await;
    let recruiter = RecruiterParams {
        prolific_pid: Some("PP1".into()),
        study_id: Some("STUDY 1".into()),
        ..RecruiterParams::default()
    };
    a.name = "alice".into();
    a.send(&hello_with("alice", "study", Some(recruiter), None))
        .await;
    match a.recv().await {
        ServerMessage::Welcome(w) => assert_eq!(w.leave_button_after_ms, Some(30_000)),
        other => panic!("{other:?}"),
    }
    a.expect_waitroom().await;
    let (mut b, _) = server.join("bob", "study").await;
    let ga = a.expect_game_start().await;
    let gb = b.expect_game_start().await;
    assert_eq!(ga.game.tick_ms, 50);
    assert_eq!(ga.game.episodes, 2);
    assert_eq!(ga.game.max_hidden_ms, Some(300));
    assert_eq!(ga.game.settings["arena"], "forest");
    assert_eq!(ga.game.settings["speeds"], serde_json::json!([1, 2.5]));
    assert!(ga.pair_rtts.is_empty());
    assert_eq!(ga.game, gb.game);

    a.send(&finish(Outcome::COMPLETED)).await;
    let o = expect_outcome(&mut a).await;
    assert_eq!(o.outcome, Outcome::COMPLETED);
    assert_eq!(o.completion_code.as_deref(), Some("C0MPLETE"));
    assert_eq!(
        o.redirect_url.as_deref(),
        Some("https://app.prolific.com/submissions/complete?cc=C0MPLETE&s=STUDY%201&p=alice")
    );
    let (closed, _) = a.expect_closed().await;
    assert_eq!(closed, NORMAL_CLOSE);
    b.expect_quiet(QUIET).await;

    b.send(&finish(Outcome::COMPLETED)).await;
    assert_eq!(expect_outcome(&mut b).await.outcome, Outcome::COMPLETED);
    b.expect_closed().await;
    let events = server.wait_for_event("study", Ev::GameEnded).await;
    let ended = events_of(&events, Ev::GameEnded);
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0]["reason"], "finished");
    let outcomes = events_of(&events, Ev::ParticipantOutcome);
    assert_eq!(outcomes.len(), 2);
    assert_eq!(outcomes[0]["subject_id"], "alice");
    assert_eq!(outcomes[0]["outcome"], "completed");
    assert_eq!(outcomes[0]["completion_code"], "C0MPLETE");
    assert_eq!(outcomes[0]["player_index"], 0);
    assert_eq!(outcomes[0]["game_id"], ga.game_id.as_str());
    let joined = events_of(&events, Ev::ParticipantJoined);
    assert_eq!(joined[0]["recruiter"]["PROLIFIC_PID"], "PP1");
    assert_eq!(joined[0]["recruiter"]["STUDY_ID"], "STUDY 1");

    server.restart().await;
    for who in ["alice", "bob"] {
        let mut c = server.connect().await;
        c.send(&hello(who, Some("study"), None)).await;
        c.expect_error(ErrorCode::IdInUse).await;
    }
    server.stop().await;
}

/// The probe's pair RTT (the larger report) reaches `game_start.pair_rtts` by player index.
#[tokio::test]
async fn game_start_carries_the_probe_pair_rtt() {
    let mut server = TestServer::with_config(STUDY).await;
    let (mut a, mut b, id) = server.probe_pair().await;
    a.send(&ready(&id)).await;
    b.send(&ready(&id)).await;
    a.expect_probe_start().await;
    b.expect_probe_start().await;
    a.send(&result(&id, true, Some(12.5))).await;
    b.send(&result(&id, true, Some(14.0))).await;
    let ga = a.expect_game_start().await;
    let gb = b.expect_game_start().await;
    for g in [&ga, &gb] {
        assert_eq!(g.pair_rtts.len(), 1);
        assert_eq!((g.pair_rtts[0].a, g.pair_rtts[0].b), (0, 1));
        assert_eq!(g.pair_rtts[0].rtt_ms, 14.0);
    }
    assert_eq!(*ga.game, pairlab_shared::GameSettings::default());
    drop((a, b));
    server.stop().await;
}

/// `record` and `attention` lines; a hidden member past `max_hidden_ms` ends the game: both
/// get `game_ended member_hidden`, the hidden one `left`, the other `partner_lost` (with the
/// scene's code); `finish` with an unknown outcome is a `bad_message` that keeps the socket.
#[tokio::test]
async fn record_attention_and_the_attention_rule() {
    let mut server = TestServer::with_config(STUDY).await;
    let (mut a, _) = server.join("ann", "study").await;
    let (mut b, _) = server.join("ben", "study").await;
    let g = a.expect_game_start().await;
    b.expect_game_start().await;
    let mut fields = serde_json::Map::new();
    fields.insert("score".into(), 3.into());
    a.send(&ClientMessage::Record(RecordEvent {
        event: "trial".into(),
        fields,
    }))
    .await;
    a.send(&finish("no_such_outcome")).await;
    a.expect_error(ErrorCode::BadMessage).await;
    b.send(&ClientMessage::Attention(Attention {
        hidden: true,
        hidden_ms: None,
    }))
    .await;
    let ended = |m: &ServerMessage| match m {
        ServerMessage::GameEnded(e) => Some(e.reason),
        _ => None,
    };
    assert_eq!(
        a.until("game_ended", ended).await,
        pairlab_shared::GameEndReason::MemberHidden
    );
    b.until("game_ended", ended).await;
    let oa = expect_outcome(&mut a).await;
    assert_eq!(oa.outcome, Outcome::PARTNER_LOST);
    assert_eq!(oa.completion_code.as_deref(), Some("LOST"));
    assert_eq!(expect_outcome(&mut b).await.outcome, Outcome::LEFT);
    let events = server.wait_for_event("study", Ev::GameEnded).await;
    let custom = events_of(&events, Ev::Custom);
    assert_eq!(custom.len(), 1);
    assert_eq!(custom[0]["name"], "trial");
    assert_eq!(custom[0]["fields"]["score"], 3);
    assert_eq!(custom[0]["subject_id"], "ann");
    assert_eq!(custom[0]["game_id"], g.game_id.as_str());
    assert_eq!(custom[0]["player_index"], 0);
    let attention = events_of(&events, Ev::Attention);
    assert_eq!(attention.len(), 1);
    assert_eq!(attention[0]["hidden"], true);
    assert_eq!(
        events_of(&events, Ev::GameEnded)[0]["reason"],
        "member_hidden"
    );
    drop((a, b));
    server.stop().await;
}

/// The waitroom deadline: `waitroom_timeout` with the outcome's filled URL, then the
/// `outcome`, then the close.
#[tokio::test]
async fn waitroom_timeout_gives_its_outcome() {
    let mut server = TestServer::with_config(STUDY).await;
    let (mut a, _) = server.join("tim:1", "short").await;
    let (closed, seen) = a.expect_closed().await;
    assert_eq!(closed, NORMAL_CLOSE);
    let url = "https://example.org/timeout?who=tim%3A1";
    match &seen[..] {
        [.., ServerMessage::WaitroomTimeout(t), ServerMessage::Outcome(o)] => {
            assert_eq!(t.redirect_url.as_deref(), Some(url));
            assert_eq!(o.outcome, Outcome::WAITROOM_TIMEOUT);
            assert_eq!(o.redirect_url.as_deref(), Some(url));
            assert_eq!(o.completion_code.as_deref(), Some("TIMEOUT1"));
        }
        other => panic!("{other:?}"),
    }
    server.stop().await;
}

/// Entry rules: a browser without a DataChannel, and a first server RTT over the scene's
/// limit: `outcome entry_refused`, then `error entry_refused`, closed; `participant_refused`.
#[tokio::test]
async fn entry_rules_refuse_with_an_outcome() {
    let mut server = TestServer::with_config(STUDY).await;
    let mut c = server.connect().await;
    let no_dc = BrowserCheck {
        webrtc: true,
        data_channel: false,
    };
    c.send(&hello_with("old", "study", None, Some(no_dc))).await;
    let (closed, seen) = c.expect_closed().await;
    assert_eq!(closed, NORMAL_CLOSE);
    match &seen[..] {
        [ServerMessage::Outcome(o), ServerMessage::Error(e)] => {
            assert_eq!(o.outcome, Outcome::ENTRY_REFUSED);
            assert_eq!(e.code, ErrorCode::EntryRefused);
        }
        other => panic!("{other:?}"),
    }
    let mut c = server.connect().await;
    c.hello("far", Some("strict"), None).await;
    let (_, seen) = c.expect_closed().await;
    assert!(
        matches!(
            &seen[..],
            [ServerMessage::Outcome(o), ServerMessage::Error(e)]
                if o.outcome == Outcome::ENTRY_REFUSED && e.code == ErrorCode::EntryRefused
        ),
        "{seen:?}"
    );
    let events = server
        .wait_for_event("strict", Ev::ParticipantRefused)
        .await;
    let refused = events_of(&events, Ev::ParticipantRefused);
    assert_eq!(refused[0]["reason"], "server_rtt");
    assert!(refused[0]["server_rtt_median_ms"].as_f64().is_some());
    let events = server.wait_for_event("study", Ev::ParticipantRefused).await;
    assert_eq!(
        events_of(&events, Ev::ParticipantRefused)[0]["reason"],
        "browser"
    );
    server.stop().await;
}

/// The site folder at `/` (its index.html, its files, no-cache with ETag revalidation),
/// confined to the folder; `/<subject_id>` is the page; `/pairlab.js` is the binary's, with
/// CORS for an allowed origin only.
#[tokio::test]
async fn the_site_folder_and_the_participant_path() {
    let site = tempfile::tempdir().expect("temp dir");
    std::fs::write(site.path().join("index.html"), "<h1>my study</h1>").unwrap();
    std::fs::create_dir(site.path().join("js")).unwrap();
    std::fs::write(site.path().join("js/game.js"), "export const x = 1;").unwrap();
    std::fs::write(site.path().join("pairlab.js"), "not the binary's").unwrap();
    let outside = tempfile::tempdir().expect("temp dir");
    std::fs::write(outside.path().join("secret.txt"), "secret").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(outside.path(), site.path().join("escape")).unwrap();
    let toml =
        format!("{TEST_CONFIG}\n[server]\nallowed_origins = [\"https://study.example.org\"]\n");
    let mut server = TestServer::with_site(&toml, site.path()).await;

    let (status, headers, body) = server.get("/").await;
    assert_eq!((status, body.as_slice()), (200, &b"<h1>my study</h1>"[..]));
    assert_eq!(header(&headers, "cache-control"), Some("no-cache"));
    assert_eq!(
        header(&headers, "content-type"),
        Some("text/html; charset=utf-8")
    );
    let etag = header(&headers, "etag").expect("an etag").to_owned();
    let (status, ..) = http_get(server.addr, "/", &[("if-none-match", &etag)]).await;
    assert_eq!(status, 304);
    let (status, headers, body) = server.get("/js/game.js").await;
    assert_eq!(
        (status, body.as_slice()),
        (200, &b"export const x = 1;"[..])
    );
    assert_eq!(
        header(&headers, "content-type"),
        Some("text/javascript; charset=utf-8")
    );
    for path in [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/js/%2E%2E/%2E%2E/secret.txt",
        "/escape/secret.txt",
    ] {
        let (status, _, body) = server.get(path).await;
        assert_ne!(body, b"secret", "{path}");
        assert!(status == 404 || status == 400, "{path}: {status}");
    }
    let (status, _, body) = server.get("/5f1a2b3c4d5e6f7a8b9c0d1e").await;
    assert_eq!(
        (status, body.as_slice()),
        (200, &b"<h1>my study</h1>"[..]),
        "the participant's own path is the page"
    );
    let (status, ..) = server.get("/a/b").await;
    assert_eq!(status, 404, "two segments are not a participant path");

    let (_, headers, body) = http_get(
        server.addr,
        "/pairlab.js",
        &[("origin", "https://study.example.org")],
    )
    .await;
    assert_ne!(
        body, b"not the binary's",
        "/pairlab.js comes from the binary"
    );
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        Some("https://study.example.org")
    );
    let (_, headers, _) = http_get(
        server.addr,
        "/pairlab.js",
        &[("origin", "https://evil.example")],
    )
    .await;
    assert_eq!(header(&headers, "access-control-allow-origin"), None);
    server.stop().await;
}

/// Without a site folder, `/<subject_id>` is the embedded page.
#[tokio::test]
async fn the_participant_path_without_a_site() {
    let mut server = TestServer::start().await;
    let (_, _, root) = server.get("/").await;
    let (status, _, page) = server.get("/PROLIFIC-5f1a").await;
    assert_eq!(status, 200);
    assert_eq!(page, root);
    let (status, _, page) = server.get("/john.doe").await;
    assert_eq!((status, page == root), (200, true), "an id with a dot");
    // What browsers and crawlers ask for by themselves is a file, not a participant: 404, not
    // the page (the page would join with the id "favicon.ico").
    for path in [
        "/favicon.ico",
        "/robots.txt",
        "/apple-touch-icon.png",
        "/Study.HTML",
    ] {
        let (status, _, _) = server.get(path).await;
        assert_eq!(status, 404, "{path}");
    }
    server.stop().await;
}

/// More `record` messages than the bucket holds (100 at once): `bad_message` "too many record
/// events", the connection stays open, the refusal is counted in `/healthz`.
#[tokio::test]
async fn record_events_over_the_rate_are_refused_and_counted() {
    let mut server = TestServer::with_config(STUDY).await;
    let (mut a, _) = server.join("rita", "study").await;
    let (_, _, body) = server.get("/healthz").await;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["record_events_refused"], 0, "{v}");
    for _ in 0..101 {
        a.send(&ClientMessage::Record(RecordEvent {
            event: "tick".into(),
            fields: serde_json::Map::new(),
        }))
        .await;
    }
    let e = a.expect_error(ErrorCode::BadMessage).await;
    assert!(e.message.contains("Too many record events"), "{e:?}");
    a.expect_open().await;
    let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
    loop {
        let (_, _, body) = server.get("/healthz").await;
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        if v["record_events_refused"].as_u64().is_some_and(|n| n >= 1) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{v}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    drop(a);
    server.stop().await;
}
