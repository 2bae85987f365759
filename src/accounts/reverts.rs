//! Undoing an email change from the old address. The notice to the old
//! address carries a revert code; offered with that address within
//! [`REVERT_TTL`], it puts the address back, ends every session, locks the
//! password and mails a reset code there. Whoever changed the email (a
//! stolen session, say) keeps nothing: not the session, not the password,
//! not the new address.

use super::{AccountError, Accounts};
use crate::domain::{
    ClientAddress, CodePurpose, MailContent, OneTimeCode, Password, QueuedMail, User, UserEmail,
};
use crate::store::{AttemptProof, Revert, RevertCheck, REVERT_TTL};

impl Accounts {
    /// The notice to `user`'s current (soon old) address that its email is
    /// changing, carrying a revert code, and the code's keyed hash; both
    /// `None` while mail is off, as no code could reach anyone.
    pub(super) fn email_change_notice(&self, user: &User) -> (Option<QueuedMail>, Option<String>) {
        let code = OneTimeCode::generate();
        let secret = &self.policy.code_secret;
        let content = MailContent::EmailChanged {
            revert: Some(secret.sealer().seal(&code)),
        };
        let notice = self.mail_to(user, content, Some(REVERT_TTL));
        let digest = notice
            .is_some()
            .then(|| secret.revert_digest(&user.email, &code));
        (notice, digest)
    }

    /// `POST /api/email-change/revert`: gives `email` back to the account
    /// it was changed away from, when `code` is the revert code sent there.
    /// Counted by the password limiter first, then against the email's
    /// wrong revert codes of the day.
    pub async fn revert_email_change(
        &self,
        client: &ClientAddress,
        email: &UserEmail,
        code: &OneTimeCode,
    ) -> Result<(), AccountError> {
        self.admit_attempt(email, client, AttemptProof::Code)
            .await?;
        let digest = self.policy.code_secret.revert_digest(email, code);
        let conn = self.store.connection();
        let max_failures = self.policy.codes.max_account_failures;
        let id = match conn.check_revert_code(email, &digest, max_failures).await? {
            RevertCheck::Matched(id) => id,
            RevertCheck::Wrong => return Err(AccountError::InvalidCode),
            RevertCheck::Refused { retry_after } => {
                return Err(AccountError::TooManyWrongCodes { retry_after })
            }
        };
        let Some(user) = conn.public_user_by_id(id).await? else {
            return Err(AccountError::InvalidCode);
        };
        let restored = User {
            email: email.clone(),
            email_verified: true,
            ..user
        };
        let revert = Revert {
            user: id,
            email: email.clone(),
            digest,
            locked_hash: self.hasher.hash(Password::unknowable()).await?,
            reset_code: self.new_code(CodePurpose::ResetPassword, &restored),
        };
        if !self.store.connection().revert_email(revert).await? {
            return Err(AccountError::InvalidCode);
        }
        self.attempt_succeeded(email, client, AttemptProof::Code)
            .await
    }
}
