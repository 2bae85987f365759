//! `/api/sessions` (log in, check, log out) and a user's own sessions and
//! activity under `/api/users/{id}`.

use chrono::{DateTime, Utc};
use rocket::http::uri::Origin;
use rocket::http::Status;
use rocket::response::status::Created;
use rocket::{delete, get, post, routes, Route};
use serde::{Deserialize, Serialize};

use super::fields::{candidate, only_query_parameters, Fields};
use super::json::{BodyFields, Json};
use super::problem::ApiError;
use super::users::{parse_id, Body};
use crate::accounts::{AccountError, Accounts, Caller, Client};
use crate::domain::{Event, Password, Session, SessionId, User, UserEmail};

pub fn routes() -> Vec<Route> {
    routes![
        post_session,
        get_current_session,
        delete_current_session,
        get_user_sessions,
        delete_user_session,
        delete_user_sessions,
        get_user_activity
    ]
}

#[derive(Deserialize)]
struct LoginData {
    email: Option<String>,
    password: Option<String>,
}

impl BodyFields for LoginData {
    const FIELDS: &'static [&'static str] = &["email", "password"];
}

/// An email and the password offered for it.
struct Login {
    email: UserEmail,
    password: Password,
}

impl TryFrom<LoginData> for Login {
    type Error = ApiError;

    fn try_from(data: LoginData) -> Result<Self, ApiError> {
        let mut fields = Fields::default();
        let email = fields.required("email", data.email.as_deref(), UserEmail::parse);
        let password = fields.required("password", data.password.as_deref(), candidate);
        match (email, password) {
            (Some(email), Some(password)) => Ok(Self { email, password }),
            _ => Err(fields.into_error()),
        }
    }
}

#[derive(Serialize)]
struct SessionCreated {
    token: String,
    expires_at: DateTime<Utc>,
    user: User,
}

#[post("/sessions", data = "<body>")]
async fn post_session(
    accounts: &Accounts,
    client: Client,
    body: Body<LoginData>,
) -> Result<Created<Json<SessionCreated>>, ApiError> {
    let login = Login::try_from(body?.0)?;
    let session = accounts.log_in(login.email, login.password, client).await?;
    Ok(
        Created::new("/api/sessions/current").body(Json(SessionCreated {
            token: session.token.expose().to_owned(),
            expires_at: session.expires_at,
            user: session.user,
        })),
    )
}

#[derive(Serialize)]
struct CurrentSession {
    user: User,
    expires_at: DateTime<Utc>,
}

#[get("/sessions/current")]
async fn get_current_session(
    caller: Result<Caller, ApiError>,
    accounts: &Accounts,
) -> Result<Json<CurrentSession>, ApiError> {
    let (session, user) = accounts.current_session(&caller?).await?;
    Ok(Json(CurrentSession {
        user,
        expires_at: accounts.session_ends_at(&session),
    }))
}

#[delete("/sessions/current")]
async fn delete_current_session(
    caller: Result<Caller, ApiError>,
    accounts: &Accounts,
) -> Result<Status, ApiError> {
    accounts.log_out(&caller?).await?;
    Ok(Status::NoContent)
}

/// A session as its user sees it: never the token.
#[derive(Serialize)]
struct SessionView {
    id: SessionId,
    created: DateTime<Utc>,
    last_seen: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    ip: String,
    user_agent: String,
    current: bool,
}

#[get("/users/<id>/sessions")]
async fn get_user_sessions(
    id: &str,
    caller: Result<Caller, ApiError>,
    accounts: &Accounts,
) -> Result<Json<Vec<SessionView>>, ApiError> {
    let caller = caller?;
    let sessions = accounts.sessions_of(&caller, parse_id(id)?).await?;
    let current = match &caller {
        Caller::User(session) => Some(&session.id),
        _ => None,
    };
    Ok(Json(
        sessions
            .into_iter()
            .map(|session: Session| SessionView {
                current: Some(&session.id) == current,
                expires_at: accounts.session_ends_at(&session),
                id: session.id,
                created: session.created,
                last_seen: session.last_seen,
                ip: session.ip,
                user_agent: session.user_agent,
            })
            .collect(),
    ))
}

#[delete("/users/<id>/sessions/<session_id>")]
async fn delete_user_session(
    id: &str,
    session_id: &str,
    caller: Result<Caller, ApiError>,
    accounts: &Accounts,
) -> Result<Status, ApiError> {
    let (caller, id) = (caller?, parse_id(id)?);
    let session_id = SessionId::parse(session_id)
        .ok_or_else(|| AccountError::SessionNotFound(session_id.to_owned()));
    accounts.end_session(&caller, id, session_id?).await?;
    Ok(Status::NoContent)
}

#[delete("/users/<id>/sessions?<keep_current>")]
async fn delete_user_sessions(
    id: &str,
    keep_current: Option<bool>,
    uri: &Origin<'_>,
    caller: Result<Caller, ApiError>,
    accounts: &Accounts,
) -> Result<Status, ApiError> {
    let (caller, id) = (caller?, parse_id(id)?);
    only_query_parameters(uri, &["keep_current"])?;
    accounts
        .end_sessions(&caller, id, keep_current.unwrap_or(false))
        .await?;
    Ok(Status::NoContent)
}

/// An account event as clients see it.
#[derive(Serialize)]
struct EventView {
    #[serde(rename = "type")]
    kind: &'static str,
    user_id: String,
    at: DateTime<Utc>,
}

impl From<Event> for EventView {
    fn from(event: Event) -> Self {
        Self {
            kind: event.kind.as_str(),
            user_id: event.user_id.to_string(),
            at: event.at,
        }
    }
}

#[get("/users/<id>/activity")]
async fn get_user_activity(
    id: &str,
    caller: Result<Caller, ApiError>,
    accounts: &Accounts,
) -> Result<Json<Vec<EventView>>, ApiError> {
    let events = accounts.activity(&caller?, parse_id(id)?).await?;
    Ok(Json(events.into_iter().map(EventView::from).collect()))
}
