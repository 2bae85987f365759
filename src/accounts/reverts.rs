//! Undoing an email change from the old address. The notice to the old
//! address carries a revert code; offered with that address within
//! [`REVERT_TTL`], it puts the address back, ends every session, locks the
//! password and mails a reset code there. Whoever changed the email (a
//! stolen session, say) keeps nothing: not the session, not the password,
//! not the new address.

use super::{AccountError, Accounts};
use crate::domain::{
    ClientAddress, CodePurpose, MailContent, Password, RevertCode, User, UserEmail,
};
use crate::store::{AttemptProof, ChangeNotice, Revert, REVERT_TTL};

impl Accounts {
    /// What makes the notice to a user's current (soon old) address that
    /// its email is changing (by an admin key or not), and the keyed hash
    /// of the revert code it carries. A revert code goes only to an address
    /// the account proved (a typo made at sign-up takes nothing back) and
    /// only when the change is the user's own: an admin key that changes an
    /// email may be taking it away from a holder it no longer trusts.
    /// Nothing while mail is off.
    pub(super) fn email_change_notice(&self, by_admin: bool) -> ChangeNotice {
        let mailer = self.mailer();
        let secret = self.policy.code_secret.clone();
        Box::new(move |user| {
            if by_admin || !user.email_verified {
                let notice = mailer.mail_to(user, MailContent::EmailChanged { revert: None }, None);
                return (notice, None);
            }
            let code = RevertCode::generate();
            let content = MailContent::EmailChanged {
                revert: Some(secret.sealer().seal(&code)),
            };
            let notice = mailer.mail_to(user, content, Some(REVERT_TTL));
            let digest = notice
                .is_some()
                .then(|| secret.revert_digest(&user.email, &code));
            (notice, digest)
        })
    }

    /// `POST /api/email-change/revert`: gives `email` back to the account
    /// it was changed away from, when `code` is the revert code sent there.
    /// Counted by the password limiter (per email and address, and per
    /// address); no cap per email, which anyone knowing the address could
    /// exhaust, is needed: the code is too long to guess.
    pub async fn revert_email_change(
        &self,
        client: &ClientAddress,
        email: &UserEmail,
        code: &RevertCode,
    ) -> Result<(), AccountError> {
        self.admit_attempt(email, client, AttemptProof::Code)
            .await?;
        let digest = self.policy.code_secret.revert_digest(email, code);
        let conn = self.store.connection();
        let Some(id) = conn.revert_code_owner(email, &digest).await? else {
            return Err(AccountError::InvalidCode);
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
