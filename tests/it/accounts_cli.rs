//! Account administration from the shell, run as the built binary: `invite create|list|
//! revoke` against the database of a running invite-only server (the code works for a
//! sign-up over HTTP at once), `create-user` for a closed server, `list-users`, and
//! `deactivate`/`activate` with the last-admin guard; none of them creates a database at a
//! mistyped path.
use crate::support::Client;

use crate::support::bin::{
    assert_ok, assert_one_line_error, run, run_with_stdin, serve, stdout, whitebeat,
};
use serde_json::json;

fn post(base: &str, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let r = Client::new(base).post(path, None, body);
    assert!(!r.body.is_null(), "{path}: not JSON: {}", r.text);
    (r.status, r.body)
}

fn signup(base: &str, username: &str, code: &str) -> u16 {
    let body = json!({"username": username, "password": "password123", "invite_code": code});
    post(base, "/api/signup/", body).0
}

fn login(base: &str, username: &str, password: &str) -> u16 {
    let body = json!({"username": username, "password": password});
    post(base, "/api/login/", body).0
}

#[test]
fn invites_made_on_the_shell_work_on_a_running_invite_only_server() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wb.sqlite3");
    let server = serve(&db, &["--signup", "invite"]);
    let base = server.base.clone();
    assert_eq!(signup(&base, "anna", ""), 403);

    let o = run(whitebeat(&db).args(["invite", "create", "--uses", "2", "--note", "cousins"]));
    assert_ok(&o);
    let code = stdout(&o).trim().to_string();
    assert_eq!(code.len(), 24, "the code alone on stdout: {code:?}");
    assert_eq!(signup(&base, "anna", &code), 201);
    assert_eq!(signup(&base, "ben", &code), 201);
    assert_eq!(signup(&base, "carl", &code), 403, "two uses only");
    assert_eq!(login(&base, "ben", "password123"), 200);

    let o = run(whitebeat(&db).args(["invite", "create", "--uses", "0", "--days", "0"]));
    assert_ok(&o);
    let open_code = stdout(&o).trim().to_string();
    let list = run(whitebeat(&db).args(["invite", "list"]));
    assert_ok(&list);
    let text = stdout(&list);
    let line_of = |code: &str| {
        text.lines()
            .find(|l| l.contains(code))
            .unwrap_or_else(|| panic!("{code} not listed: {text}"))
            .to_string()
    };
    assert!(line_of(&code).contains("used up"), "{text}");
    assert!(line_of(&code).contains("2/2"), "{text}");
    assert!(line_of(&code).contains("cousins"), "{text}");
    assert!(line_of(&open_code).contains("usable"), "{text}");
    assert!(line_of(&open_code).contains("0/any"), "{text}");
    assert!(line_of(&open_code).contains("never"), "{text}");
    assert!(text.contains("2 invite(s)"), "{text}");

    assert_ok(&run(whitebeat(&db).args(["invite", "revoke", &open_code])));
    assert_eq!(signup(&base, "dora", &open_code), 403);
    let o = run(whitebeat(&db).args(["invite", "revoke", "no-such-code"]));
    assert_one_line_error(&o, "no invite");
    let o = run(whitebeat(&db).args(["invite", "create", "--uses=-3"]));
    assert_one_line_error(&o, "max_uses");

    // A mistyped --db is an error, not a new empty database the server never sees.
    let wrong = dir.path().join("typo.sqlite3");
    for args in [
        &["invite", "create"][..],
        &["list-users"],
        &["make-admin", "anna"],
        &["deactivate", "anna"],
    ] {
        let o = run(whitebeat(&wrong).args(args));
        assert_one_line_error(&o, "no database at");
        assert!(!wrong.exists(), "{args:?} created {}", wrong.display());
    }
}

#[test]
fn create_user_list_users_and_deactivate_from_the_shell() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wb.sqlite3");
    let server = serve(&db, &["--signup", "closed"]);
    let base = server.base.clone();
    assert_eq!(signup(&base, "walkin", "whatever"), 403);

    let o = run_with_stdin(
        whitebeat(&db).args(["create-user", "gran", "--email", "gran@family.example"]),
        "knitting-needles\n",
    );
    assert_ok(&o);
    assert!(stdout(&o).contains("`gran` created"), "{}", stdout(&o));
    assert_eq!(login(&base, "gran", "knitting-needles"), 200);
    let o = run_with_stdin(
        whitebeat(&db).args(["create-user", "boss", "--admin"]),
        "password123\n",
    );
    assert_ok(&o);
    let o = run_with_stdin(
        whitebeat(&db).args(["create-user", "gran"]),
        "password123\n",
    );
    assert_one_line_error(&o, "already taken");
    let o = run_with_stdin(whitebeat(&db).args(["create-user", "kid"]), "short\n");
    assert_one_line_error(&o, "at least 8");

    assert_ok(&run(whitebeat(&db).args(["deactivate", "gran"])));
    assert_eq!(login(&base, "gran", "knitting-needles"), 401);
    let list = run(whitebeat(&db).arg("list-users"));
    assert_ok(&list);
    let text = stdout(&list);
    let gran = text.lines().find(|l| l.contains("gran")).unwrap();
    assert!(
        gran.contains("inactive") && gran.contains("gran@family.example"),
        "{text}"
    );
    let boss = text.lines().find(|l| l.contains("boss")).unwrap();
    assert!(boss.contains("admin") && boss.contains("active"), "{text}");
    assert!(text.contains("2 account(s)"), "{text}");
    let found = run(whitebeat(&db).args(["list-users", "--search", "family"]));
    assert!(
        stdout(&found).contains("1 account(s)"),
        "{}",
        stdout(&found)
    );

    // The only admin stays: deactivating them is refused and changes nothing.
    let o = run(whitebeat(&db).args(["deactivate", "boss"]));
    assert_one_line_error(&o, "last active admin");
    assert_eq!(login(&base, "boss", "password123"), 200);

    assert_ok(&run(whitebeat(&db).args(["activate", "gran"])));
    assert_eq!(login(&base, "gran", "knitting-needles"), 200);
}
