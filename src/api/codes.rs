//! `/api/email-verification` and `/api/password-reset`: asking for a code,
//! and confirming one; `/api/email-change/revert`: the code the old address
//! got when the email changed. The answers to a request for a code are the same
//! whether or not the email has an account.

use std::sync::Arc;

use rocket::http::Status;
use rocket::{delete, post, routes, Route, State};
use serde::Deserialize;

use super::fields::Fields;
use super::json::{BodyFields, Json, Message};
use super::problem::ApiError;
use super::users::{parse_id, Body};
use crate::accounts::{Accounts, Caller, Client};
use crate::domain::{CodePurpose, OneTimeCode, Password, RevertCode, User, UserEmail};

pub fn routes() -> Vec<Route> {
    routes![
        post_email_verification,
        post_email_verification_confirm,
        post_password_reset,
        post_password_reset_confirm,
        post_user_password_reset,
        delete_user_code_limits,
        post_email_change_revert
    ]
}

#[derive(Deserialize)]
struct EmailData {
    email: Option<String>,
}

impl BodyFields for EmailData {
    const FIELDS: &'static [&'static str] = &["email"];
}

#[derive(Deserialize)]
struct ConfirmData {
    email: Option<String>,
    code: Option<String>,
    new_password: Option<String>,
}

impl BodyFields for ConfirmData {
    const FIELDS: &'static [&'static str] = &["email", "code", "new_password"];
}

/// The body of a confirmation that sets nothing: an email and its code.
#[derive(Deserialize)]
#[serde(transparent)]
struct CodeData(ConfirmData);

impl BodyFields for CodeData {
    const FIELDS: &'static [&'static str] = &["email", "code"];
}

/// An email and the code sent to it.
struct CodeConfirmation {
    email: UserEmail,
    code: OneTimeCode,
}

/// An old email and the revert code sent to it.
struct RevertConfirmation {
    email: UserEmail,
    code: RevertCode,
}

/// The same, and the new password it is to set.
struct ResetConfirmation {
    email: UserEmail,
    code: OneTimeCode,
    new_password: Password,
}

fn email_and_code(
    fields: &mut Fields,
    data: &ConfirmData,
) -> (Option<UserEmail>, Option<OneTimeCode>) {
    (
        fields.required("email", data.email.as_deref(), UserEmail::parse),
        fields.required("code", data.code.as_deref(), OneTimeCode::parse),
    )
}

impl TryFrom<ConfirmData> for CodeConfirmation {
    type Error = ApiError;

    fn try_from(data: ConfirmData) -> Result<Self, ApiError> {
        let mut fields = Fields::default();
        match email_and_code(&mut fields, &data) {
            (Some(email), Some(code)) => Ok(Self { email, code }),
            _ => Err(fields.into_error()),
        }
    }
}

impl TryFrom<ConfirmData> for RevertConfirmation {
    type Error = ApiError;

    fn try_from(data: ConfirmData) -> Result<Self, ApiError> {
        let mut fields = Fields::default();
        let email = fields.required("email", data.email.as_deref(), UserEmail::parse);
        let code = fields.required("code", data.code.as_deref(), RevertCode::parse);
        match (email, code) {
            (Some(email), Some(code)) => Ok(Self { email, code }),
            _ => Err(fields.into_error()),
        }
    }
}

impl TryFrom<ConfirmData> for ResetConfirmation {
    type Error = ApiError;

    fn try_from(data: ConfirmData) -> Result<Self, ApiError> {
        let mut fields = Fields::default();
        let (email, code) = email_and_code(&mut fields, &data);
        let new_password = fields.required(
            "new_password",
            data.new_password.as_deref(),
            Password::parse,
        );
        match (email, code, new_password) {
            (Some(email), Some(code), Some(new_password)) => Ok(Self {
                email,
                code,
                new_password,
            }),
            _ => Err(fields.into_error()),
        }
    }
}

/// Asks for a code of `purpose`; the answer never tells whether the email
/// has an account.
async fn request_code(
    purpose: CodePurpose,
    accounts: &Arc<Accounts>,
    client: Client,
    body: Body<EmailData>,
) -> Result<(Status, Json<Message>), ApiError> {
    let mut fields = Fields::default();
    let Some(email) = fields.required("email", body?.0.email.as_deref(), UserEmail::parse) else {
        return Err(fields.into_error());
    };
    accounts
        .request_code(purpose, &client.address, email)
        .await?;
    Ok((
        Status::Accepted,
        Json(Message {
            message: "If the address has an account that may use it, a code is on its way",
        }),
    ))
}

#[post("/email-verification", data = "<body>")]
async fn post_email_verification(
    accounts: &State<Arc<Accounts>>,
    client: Client,
    body: Body<EmailData>,
) -> Result<(Status, Json<Message>), ApiError> {
    request_code(CodePurpose::VerifyEmail, accounts.inner(), client, body).await
}

#[post("/email-verification/confirm", data = "<body>")]
async fn post_email_verification_confirm(
    accounts: &Accounts,
    client: Client,
    body: Body<CodeData>,
) -> Result<Json<User>, ApiError> {
    let confirmation = CodeConfirmation::try_from(body?.0 .0)?;
    let user = accounts
        .confirm_email(&client.address, &confirmation.email, &confirmation.code)
        .await?;
    Ok(Json(user))
}

#[post("/password-reset", data = "<body>")]
async fn post_password_reset(
    accounts: &State<Arc<Accounts>>,
    client: Client,
    body: Body<EmailData>,
) -> Result<(Status, Json<Message>), ApiError> {
    request_code(CodePurpose::ResetPassword, accounts.inner(), client, body).await
}

#[post("/password-reset/confirm", data = "<body>")]
async fn post_password_reset_confirm(
    accounts: &Accounts,
    client: Client,
    body: Body<ConfirmData>,
) -> Result<Json<Message>, ApiError> {
    let reset = ResetConfirmation::try_from(body?.0)?;
    accounts
        .reset_password(
            &client.address,
            &reset.email,
            &reset.code,
            reset.new_password,
        )
        .await?;
    Ok(Json(Message {
        message: "Password updated",
    }))
}

/// An admin key sends the user a reset code.
#[post("/users/<id>/password-reset")]
async fn post_user_password_reset(
    id: &str,
    caller: Result<Caller, ApiError>,
    accounts: &Accounts,
) -> Result<(Status, Json<Message>), ApiError> {
    let id = parse_id(id)?;
    accounts.send_password_reset(&caller?, id).await?;
    Ok((
        Status::Accepted,
        Json(Message {
            message: "A reset code is on its way to the user",
        }),
    ))
}

/// An admin key lifts the day's caps on the user's codes and wrong
/// confirmations.
#[delete("/users/<id>/code-limits")]
async fn delete_user_code_limits(
    id: &str,
    caller: Result<Caller, ApiError>,
    accounts: &Accounts,
) -> Result<Status, ApiError> {
    let id = parse_id(id)?;
    accounts.clear_code_limits(&caller?, id).await?;
    Ok(Status::NoContent)
}

/// The old address of an email change takes the account back with the
/// revert code it was sent.
#[post("/email-change/revert", data = "<body>")]
async fn post_email_change_revert(
    accounts: &Accounts,
    client: Client,
    body: Body<CodeData>,
) -> Result<Json<Message>, ApiError> {
    let revert = RevertConfirmation::try_from(body?.0 .0)?;
    accounts
        .revert_email_change(&client.address, &revert.email, &revert.code)
        .await?;
    Ok(Json(Message {
        message: "The email is back; every session has ended, and a code to choose a new \
                  password is on its way to it",
    }))
}
