//! Mail in Redis: the queue's writing end, which the changes that cause mail
//! add to their own atomic step, and its reading end, the sender's.

pub(super) mod delivery;
pub(super) mod queue;
