//! Accounts and sessions: sign-up, login, logout, and Admin-group membership.

use crate::api::ctx::{check_identity_field, Ctx};
use crate::config::SignupMode;
use crate::domain::auth::{self, Identity, LoginKey, PasswordHasher, SESSION_COOKIE};
use crate::error::{Error, Result};
use crate::http::{Request, Response};
use crate::store::users::NewUser;
use crate::store::{self, users::AdminChange, users::CreateUserError, users::NameClash};
use serde::Deserialize;
use serde_json::json;
use std::net::IpAddr;

#[derive(Deserialize)]
struct SignupBody {
    username: Option<String>,
    password: Option<String>,
    email: Option<String>,
    invite_code: Option<String>,
}

/// # `GET /api/signup/`
/// Who may sign up here (`open`, `invite` or `closed`), so the sign-in page can ask for an
/// invite code or say that accounts come from an admin.
pub fn signup_mode(ctx: &Ctx, _req: &Request) -> Result<Response> {
    Response::json(200, &json!({"mode": ctx.app.config.signup.as_str()}))
}

/// The invite code a sign-up must use up, or `403` when this server's sign-up mode refuses
/// it. Checked before anything else, so a refused sign-up learns nothing about usernames.
fn admission(ctx: &Ctx, code: Option<String>) -> Result<Option<String>> {
    match ctx.app.config.signup {
        SignupMode::Open => Ok(None),
        SignupMode::Closed => Err(Error::forbidden(
            "Sign-up is closed on this server; ask an admin for an account",
        )),
        SignupMode::Invite => {
            let code = code
                .map(|c| c.trim().to_ascii_lowercase())
                .filter(|c| !c.is_empty())
                .ok_or_else(|| Error::forbidden("An invite code is needed to sign up here"))?;
            if code.len() > 128 || !store::invites::is_usable(ctx.db, &code, store::now_us())? {
                return Err(invite_refused());
            }
            Ok(Some(code))
        }
    }
}

fn invite_refused() -> Error {
    Error::forbidden("This invite code is not valid: it may be used up, expired or revoked")
}

/// The `400` for a name that is taken: the original's message for the exact name; for a
/// look-alike the same words first (clients that compare the start keep working), then why.
fn username_taken(clash: NameClash) -> Error {
    Error::bad_request(match clash {
        NameClash::Exact => "Username already exists",
        NameClash::LooksAlike => {
            "Username already exists in a form that looks the same (names that differ only \
             in case, letter width or look-alike letters count as one)"
        }
    })
}

/// Validates and creates an account (sign-up and the admin page's "create account"):
/// `400` for a missing or invalid field or a taken username (exactly or by a look-alike)
/// or email, `403` when the invite is no longer usable. With `signup_from`, the sign-up
/// limit of that address is counted just before the password is hashed (see `signup`).
/// Returns the id, the trimmed username and the email used.
pub fn register(
    ctx: &Ctx,
    username: &str,
    password: &str,
    email: Option<String>,
    is_admin: bool,
    invite_code: Option<&str>,
    signup_from: Option<IpAddr>,
) -> Result<(i64, String, String)> {
    let (username, email) = auth::new_account_fields(username, password, email.as_deref())?;
    // Cheap check first so a taken name does not cost an Argon2 hash.
    if let Some(clash) = store::users::name_clash(ctx.db, &username)? {
        return Err(username_taken(clash));
    }
    if let Some(ip) = signup_from {
        ctx.app
            .signup_limit
            .check(&crate::http::proxy::client_network(ip))?;
    }
    let hash = ctx.app.hasher.hash(password)?;
    let new = NewUser {
        username: &username,
        email: &email,
        password_hash: &hash,
        is_admin,
        is_superuser: false,
        invite_code,
        now: store::now_us(),
    };
    let user_id = store::users::create(ctx.db, &new).map_err(|e| match e {
        CreateUserError::UsernameTaken => username_taken(NameClash::Exact),
        CreateUserError::UsernameLooksAlike => username_taken(NameClash::LooksAlike),
        CreateUserError::EmailTaken => Error::bad_request("Email already exists"),
        CreateUserError::InviteInvalid => invite_refused(),
        CreateUserError::Db(e) => e.into(),
    })?;
    Ok((user_id, username, email))
}

/// # `POST /api/signup/`
/// Creates an ordinary user. `403` when the sign-up mode refuses it (closed, or no valid
/// invite code on an invite-only server); `400` for a missing or invalid field or a taken
/// username (or a look-alike of one) or email; `429` with `Retry-After` beyond
/// `--signups-per-hour` from one address. The email defaults to `<username>@whitebeat.com`
/// as in the original.
///
/// What counts against the address's limit: every sign-up that gets as far as hashing its
/// password, whether or not it then succeeds. Those refused earlier (closed server, bad
/// invite, invalid or taken fields) cost a few cheap checks and write nothing, so they are
/// not counted; a person correcting a typo keeps their allowance, and a flood of them is
/// no heavier than any other stream of small requests. A flood that does reach the hash,
/// the costly part and the one that fills the database, is what the limit stops.
pub fn signup(ctx: &Ctx, req: &Request) -> Result<Response> {
    let body: SignupBody = req.json()?;
    let invite_code = admission(ctx, body.invite_code)?;
    let (Some(username), Some(password)) = (body.username, body.password) else {
        return Err(Error::bad_request("Username and password are required"));
    };
    let (user_id, username, email) = register(
        ctx,
        &username,
        &password,
        body.email,
        false,
        invite_code.as_deref(),
        Some(req.client_ip),
    )?;
    Response::json(
        201,
        &json!({
            "success": true,
            "role": "user",
            "username": username,
            "email": email,
            "user_id": user_id,
            "message": "Account created successfully! You can now login.",
        }),
    )
}

#[derive(Deserialize)]
struct LoginBody {
    username: Option<String>,
    password: Option<String>,
}

/// The active user these credentials belong to, or `None`, counted by the login throttle
/// (`429` while the account or the address is over its limit). One password verification
/// whether or not the user exists. The throttle counts an existing account by its id, so
/// only that account's own successful login forgives its failures (not the success of
/// another account whose name differs only in case); an unknown name is counted by name,
/// so guesses at it are throttled the same way.
fn check_credentials(
    ctx: &Ctx,
    req: &Request,
    username: &str,
    password: &str,
) -> Result<Option<store::users::User>> {
    let throttle = &ctx.app.throttle;
    let user = store::users::find_by_username(ctx.db, username)?;
    let account = LoginKey::for_login(user.as_ref().map(|u| u.id), username);
    let client = crate::http::proxy::client_network(req.client_ip);
    throttle.check(&account, client)?;
    let password_ok = ctx
        .app
        .hasher
        .verify(user.as_ref().map(|u| u.password_hash.as_str()), password);
    match user {
        Some(u) if password_ok && u.is_active => {
            throttle.record_success(&account);
            Ok(Some(u))
        }
        _ => {
            throttle.record_failure(&account, client);
            Ok(None)
        }
    }
}

pub(crate) fn groups(is_admin: bool) -> Vec<&'static str> {
    if is_admin {
        vec!["Admin"]
    } else {
        vec![]
    }
}

/// # `POST /api/login/`
/// Checks the password (one Argon2 verification whether or not the user exists), opens a
/// session and returns the original's fields plus `token` and `is_admin`, and sets the
/// session cookie. `429` when the account or the address has failed too often. A password
/// imported from the Django original (PBKDF2) is replaced by an Argon2id hash here.
pub fn login(ctx: &Ctx, req: &Request) -> Result<Response> {
    let body: LoginBody = req.json()?;
    let (Some(username), Some(password)) = (body.username, body.password) else {
        return Err(Error::bad_request("Username and password are required"));
    };
    if username.is_empty() || password.is_empty() {
        return Err(Error::bad_request("Username and password are required"));
    }
    let Some(user) = check_credentials(ctx, req, &username, &password)? else {
        return Err(Error::unauthorized("Invalid username or password"));
    };
    // Hashed before the write lock is taken; a failure only postpones the upgrade to the
    // next login, it does not refuse this one.
    let upgraded = if PasswordHasher::needs_rehash(&user.password_hash) {
        ctx.app
            .hasher
            .hash(&password)
            .map_err(|e| log::warn!("could not upgrade the password hash of {}: {e}", user.id))
            .ok()
    } else {
        None
    };

    let (token, token_hash) = auth::new_token()?;
    let idle = ctx.app.config.session_idle;
    let now = store::now_us();
    let tx = store::write_tx(ctx.db)?;
    if !store::users::still_verified(&tx, user.id, &user.password_hash)? {
        return Err(Error::unauthorized("Invalid username or password"));
    }
    store::sessions::create(&tx, &token_hash, user.id, now, idle.as_micros() as i64)?;
    store::users::touch_activity(&tx, user.id, now)?;
    if let Some(new_hash) = &upgraded {
        store::users::upgrade_password_hash(&tx, user.id, &user.password_hash, new_hash)?;
    }
    tx.commit()?;
    ctx.set_identity(Identity {
        user_id: user.id,
        username: user.username.clone(),
        is_admin: user.is_admin,
        token_hash,
    });

    let role = if user.is_admin { "admin" } else { "user" };
    let mut body = json!({
        "role": role,
        "username": user.username,
        "email": user.email,
        "message": if user.is_admin { "Admin login successful" } else { "User login successful" },
        "user_id": user.id,
        "is_admin_group": user.is_admin,
        "groups": groups(user.is_admin),
        "is_admin": user.is_admin,
        "token": token,
    });
    if user.is_admin {
        body["is_staff"] = json!(true);
    }
    let cookie = session_cookie(ctx, &token, idle.as_secs());
    Ok(Response::json(200, &body)?.with_header("Set-Cookie", &cookie))
}

#[derive(Deserialize, Default)]
struct IdentityBody {
    username: Option<String>,
}

/// # `POST /api/logout/`
/// Revokes the session the request carries and clears the cookie.
pub fn logout(ctx: &Ctx, req: &Request) -> Result<Response> {
    let me = ctx.require_user(req)?;
    let body: IdentityBody = req.json_or_default()?;
    check_identity_field(&me, body.username.as_deref())?;
    store::sessions::delete(ctx.db, &me.token_hash)?;
    ctx.app.hub.close_session(&me.token_hash);
    let cookie = session_cookie(ctx, "", 0);
    Ok(Response::json(200, &json!({"success": true}))?.with_header("Set-Cookie", &cookie))
}

/// The session cookie's `Set-Cookie` value (an empty token with age 0 clears it): never
/// readable by scripts, not sent on cross-site posts, `Secure` when served over HTTPS.
fn session_cookie(ctx: &Ctx, token: &str, max_age_secs: u64) -> String {
    let secure = if ctx.app.config.secure_cookie() {
        "; Secure"
    } else {
        ""
    };
    format!(
        "{SESSION_COOKIE}={token}; HttpOnly; SameSite=Lax; Path=/; Max-Age={max_age_secs}{secure}"
    )
}

/// # `POST /api/verify-admin/`
/// Whether a user is in the Admin group; only about yourself unless you are an admin.
pub fn verify_admin(ctx: &Ctx, req: &Request) -> Result<Response> {
    let me = ctx.require_user(req)?;
    let body: IdentityBody = req.json_or_default()?;
    let name = body
        .username
        .filter(|n| !n.is_empty())
        .unwrap_or(me.username.clone());
    if name != me.username && !me.is_admin {
        return Err(Error::forbidden("You can only check your own admin status"));
    }
    let user = store::users::find_by_username(ctx.db, &name)?
        .ok_or_else(|| Error::not_found("User not found"))?;
    Response::json(
        200,
        &json!({
            "is_admin": user.is_admin,
            "is_admin_group": user.is_admin,
            "username": user.username,
            "groups": groups(user.is_admin),
        }),
    )
}

#[derive(Deserialize)]
struct AdminChangeBody {
    admin_username: Option<String>,
    admin_password: Option<String>,
    target_username: Option<String>,
}

/// Who may change Admin membership: an admin's credentials in the body (the original's
/// way), or else an admin session.
fn authorize_admin_change(ctx: &Ctx, req: &Request, body: &AdminChangeBody) -> Result<()> {
    match (&body.admin_username, &body.admin_password) {
        (Some(name), Some(password)) if !name.is_empty() && !password.is_empty() => {
            match check_credentials(ctx, req, name, password)? {
                Some(a) => {
                    if !a.is_admin {
                        return Err(Error::forbidden("Only admins can change admin rights"));
                    }
                    ctx.set_identity(Identity {
                        user_id: a.id,
                        username: a.username,
                        is_admin: true,
                        token_hash: Vec::new(),
                    });
                    Ok(())
                }
                None => Err(Error::forbidden("Invalid admin credentials")),
            }
        }
        (None, None) => ctx.require_admin(req).map(|_| ()),
        _ => Err(Error::bad_request(
            "admin_username and admin_password must be given together",
        )),
    }
}

fn change_admin(ctx: &Ctx, req: &Request, make: bool) -> Result<Response> {
    let body: AdminChangeBody = req.json()?;
    let target = body
        .target_username
        .clone()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Error::bad_request("target_username is required"))?;
    authorize_admin_change(ctx, req, &body)?;
    let user = store::users::find_by_username(ctx.db, &target)?
        .ok_or_else(|| Error::not_found("Target user not found"))?;
    if store::users::set_admin(ctx.db, user.id, make)? == AdminChange::LastAdmin {
        return Err(Error::Conflict(
            "Cannot remove the last admin; make another user admin first".into(),
        ));
    }
    let message = if make {
        format!("{} is now an admin", user.username)
    } else {
        format!("{} is no longer an admin", user.username)
    };
    // The original view's fields (`success, message, username, is_admin_group, groups`),
    // plus `is_admin` as login and verify-admin have it.
    Response::json(
        200,
        &json!({
            "success": true,
            "message": message,
            "username": user.username,
            "is_admin_group": make,
            "is_admin": make,
            "groups": groups(make),
        }),
    )
}

/// # `POST /api/make-admin/`
/// Adds `target_username` to the Admin group.
pub fn make_admin(ctx: &Ctx, req: &Request) -> Result<Response> {
    change_admin(ctx, req, true)
}

/// # `POST /api/remove-admin/`
/// Removes `target_username` from the Admin group; the last admin cannot be removed (`409`).
pub fn remove_admin(ctx: &Ctx, req: &Request) -> Result<Response> {
    change_admin(ctx, req, false)
}
