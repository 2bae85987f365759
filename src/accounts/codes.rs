//! Email verification and password reset by one-time codes.
//!
//! A request for a code answers the same, and in the same time, whether or
//! not the email has an account (so the answer tells nothing): it is
//! counted per client address, answered, and only then is the account
//! looked up. A code goes out only to an account that may use it, and at most
//! once per `MAIL_RESEND_SECS` and purpose unless a change calls for one (a
//! sign-up, a new email). Confirming a code goes through the same limiter
//! as a password.

use std::sync::Arc;
use std::time::Duration;

use super::{AccountError, Accounts, Caller};
use crate::domain::{
    ClientAddress, CodePurpose, MailContent, OneTimeCode, Password, QueuedMail, User, UserEmail,
    UserId,
};
use crate::store::{Admission, AttemptProof, CodeAttempt, CodeCheck, NewCode, Resend, Reset};

/// The window of `MAIL_MAX_PER_ADDRESS`.
const CODE_REQUEST_WINDOW: Duration = Duration::from_secs(3600);

impl Accounts {
    /// `POST /api/email-verification` and `POST /api/password-reset`: a
    /// code of `purpose` to the account holding `email`, when it exists and
    /// may use one (enabled; for verification, not verified yet). The
    /// outcome is the same either way, and so is the time it takes: the
    /// account's part runs after the answer, tracked so that shutdown
    /// waits for it.
    pub async fn request_code(
        self: &Arc<Self>,
        purpose: CodePurpose,
        client: &ClientAddress,
        email: UserEmail,
    ) -> Result<(), AccountError> {
        self.count_code_request(client).await?;
        let accounts = Arc::clone(self);
        self.after_answers.spawn(async move {
            if let Err(error) = accounts.issue_requested_code(purpose, &email).await {
                accounts.log_failure("a requested code was not issued", &error);
            }
        });
        Ok(())
    }

    /// The part of [`Accounts::request_code`] that depends on the account.
    async fn issue_requested_code(
        &self,
        purpose: CodePurpose,
        email: &UserEmail,
    ) -> Result<(), AccountError> {
        let Some(user) = self.user_with_email(email).await? else {
            return Ok(());
        };
        let eligible = match purpose {
            CodePurpose::VerifyEmail => !user.disabled && !user.email_verified,
            CodePurpose::ResetPassword => !user.disabled,
        };
        if eligible {
            self.send_code(purpose, &user, Resend::Wait).await?;
        }
        Ok(())
    }

    /// `POST /api/users/{id}/password-reset`: an admin sends the user a code.
    pub async fn send_password_reset(
        &self,
        caller: &Caller,
        id: UserId,
    ) -> Result<(), AccountError> {
        let user = self.user_for_admin(caller, id).await?;
        self.send_code(CodePurpose::ResetPassword, &user, Resend::Now)
            .await
    }

    /// Marks the email verified when `code` is its live verification code.
    pub async fn confirm_email(
        &self,
        client: &ClientAddress,
        email: &UserEmail,
        code: &OneTimeCode,
    ) -> Result<User, AccountError> {
        let user = self
            .check_code(client, CodePurpose::VerifyEmail, email, code, true)
            .await?
            .user;
        self.attempt_succeeded(email, client, AttemptProof::Code)
            .await?;
        Ok(User {
            email_verified: true,
            ..user
        })
    }

    /// Sets a new password when `code` is the live reset code: the code is
    /// spent, the email counts as verified, every session ends and every
    /// login counter of the account is cleared. A weak new password leaves
    /// the code as it was.
    pub async fn reset_password(
        &self,
        client: &ClientAddress,
        email: &UserEmail,
        code: &OneTimeCode,
        new_password: Password,
    ) -> Result<(), AccountError> {
        let CheckedCode { user, digest } = self
            .check_code(client, CodePurpose::ResetPassword, email, code, false)
            .await?;
        self.judge_new_password(&new_password, &user).await?;
        let new_hash = self.hasher.hash(new_password).await?;
        let notice = self.mail_to(&user, MailContent::PasswordChanged, None);
        let reset = Reset {
            user: user.id,
            email: user.email.clone(),
            digest,
            new_hash,
            notice,
        };
        if !self.store.connection().reset_password(reset).await? {
            return Err(AccountError::InvalidCode);
        }
        Ok(())
    }

    /// `DELETE /api/users/{id}/code-limits`: an admin lifts the day's caps
    /// on the account's codes and wrong confirmations.
    pub async fn clear_code_limits(&self, caller: &Caller, id: UserId) -> Result<(), AccountError> {
        let user = self.user_for_admin(caller, id).await?;
        Ok(self
            .store
            .connection()
            .clear_code_limits(id, &user.email)
            .await?)
    }

    /// The user `id`, for a caller that must hold an admin key.
    async fn user_for_admin(&self, caller: &Caller, id: UserId) -> Result<User, AccountError> {
        caller.require_admin()?;
        self.store
            .connection()
            .public_user_by_id(id)
            .await?
            .ok_or_else(|| AccountError::NotFound(id.to_string()))
    }

    /// A fresh code of `purpose` for `user`, and its mail (when mail is on),
    /// ready to be stored.
    pub(super) fn new_code(&self, purpose: CodePurpose, user: &User) -> NewCode {
        let code = OneTimeCode::generate();
        let digest = self.code_digest(purpose, user, &code);
        let code = self.policy.code_secret.sealer().seal(&code);
        let content = match purpose {
            CodePurpose::VerifyEmail => MailContent::VerifyEmail { code },
            CodePurpose::ResetPassword => MailContent::ResetPassword { code },
        };
        let codes = &self.policy.codes;
        NewCode {
            purpose,
            digest,
            ttl: codes.ttl,
            resend: codes.resend,
            max_per_day: codes.max_per_day,
            mail: self.mail_to(user, content, Some(codes.ttl)),
        }
    }

    /// Issues a code of `purpose` to `user` and queues its mail, in one
    /// step; with `Resend::Wait`, unless the resend rule holds it back.
    async fn send_code(
        &self,
        purpose: CodePurpose,
        user: &User,
        resend: Resend,
    ) -> Result<(), AccountError> {
        let code = self.new_code(purpose, user);
        self.store
            .connection()
            .issue_code(user.id, &code, resend)
            .await?;
        Ok(())
    }

    /// A message to `user`, or `None` while mail is off; see
    /// [`Mailer::mail_to`].
    pub(super) fn mail_to(
        &self,
        user: &User,
        content: MailContent,
        lifetime: Option<Duration>,
    ) -> Option<QueuedMail> {
        self.mailer().mail_to(user, content, lifetime)
    }

    /// The keyed hash of `code`, bound to its purpose, the user and the
    /// email it was sent to: a new email makes an old code useless.
    fn code_digest(&self, purpose: CodePurpose, user: &User, code: &OneTimeCode) -> String {
        self.policy
            .code_secret
            .digest(purpose, user.id, &user.email, code)
    }

    async fn count_code_request(&self, client: &ClientAddress) -> Result<(), AccountError> {
        let admission = self
            .store
            .connection()
            .count_code_request(
                &client.counted_as(),
                CODE_REQUEST_WINDOW,
                self.policy.codes.max_per_address,
            )
            .await?;
        match admission {
            Admission::Admitted => Ok(()),
            Admission::Refused { retry_after } => {
                Err(AccountError::TooManyCodeRequests { retry_after })
            }
        }
    }

    async fn user_with_email(&self, email: &UserEmail) -> Result<Option<User>, AccountError> {
        Ok(self.store.connection().public_user_by_email(email).await?)
    }

    /// Checks `code` of `purpose` for the enabled user holding `email`:
    /// counted by the password limiter first, then against the account's
    /// wrong confirmations of the day. An email with no such user counts as
    /// a wrong code, so unknown emails and wrong codes look alike, limits
    /// included.
    async fn check_code(
        &self,
        client: &ClientAddress,
        purpose: CodePurpose,
        email: &UserEmail,
        code: &OneTimeCode,
        spend: bool,
    ) -> Result<CheckedCode, AccountError> {
        self.admit_attempt(email, client, AttemptProof::Code)
            .await?;
        let max_account_failures = self.policy.codes.max_account_failures;
        let conn = self.store.connection();
        let (checked, user) = match self.user_with_email(email).await? {
            Some(user) if !user.disabled => {
                let digest = self.code_digest(purpose, &user, code);
                let attempt = CodeAttempt {
                    purpose,
                    user: user.id,
                    digest: &digest,
                    spend,
                    max_account_failures,
                };
                let checked = conn.check_code(&attempt).await?;
                (checked, Some(CheckedCode { user, digest }))
            }
            _ => {
                let checked = conn
                    .count_code_failure(purpose, email, max_account_failures)
                    .await?;
                (checked, None)
            }
        };
        match (checked, user) {
            (CodeCheck::Matched, Some(user)) => Ok(user),
            (CodeCheck::Refused { retry_after }, _) => {
                Err(AccountError::TooManyWrongCodes { retry_after })
            }
            _ => Err(AccountError::InvalidCode),
        }
    }
}

/// A code that matched, the user it is for and its digest.
struct CheckedCode {
    user: User,
    digest: String,
}
