//! The check, on every new connection (a Redis restored from an earlier
//! snapshot may hold the earlier layout again), that the keys under the prefix are
//! in this release's layout. Keys of the first layout would otherwise read
//! as missing (every user gone, every email free to take again), and the
//! doctor would "repair" them away: so nothing runs on them until
//! `user-accounts migrate` has rewritten them.

use redis::{ConnectionLike, RedisError, RedisResult};

use crate::store::layout::{Keys, LAYOUT_MIGRATING, LAYOUT_VERSION};

/// The error code of a refusal to run on keys of another layout.
pub const LAYOUT_MISMATCH: &str = "LAYOUT_MISMATCH";

pub struct LayoutCheck {
    marker: String,
    first_layout_keys: [String; 2],
}

impl LayoutCheck {
    pub fn new(keys: &Keys) -> Self {
        Self {
            marker: keys.layout_marker(),
            first_layout_keys: keys.first_layout_keys(),
        }
    }

    /// Passes when the marker names this release's layout. Where there is
    /// no marker and no key of the first layout either (a new deployment),
    /// the marker is set first.
    pub fn ensure(&self, connection: &mut dyn ConnectionLike) -> RedisResult<()> {
        let mut marker = self.marker(connection)?;
        if marker.is_none() {
            // One key at a time: on a cluster they live in different slots.
            let mut earlier = false;
            for key in &self.first_layout_keys {
                earlier |= redis::cmd("EXISTS").arg(key).query::<bool>(connection)?;
            }
            if earlier {
                return Err(mismatch(
                    "Redis holds data in an earlier release's layout: stop every instance of \
                     that release and run `user-accounts migrate`",
                ));
            }
            redis::cmd("SET")
                .arg(&self.marker)
                .arg(LAYOUT_VERSION)
                .arg("NX")
                .exec(connection)?;
            marker = self.marker(connection)?;
        }
        match marker.as_deref() {
            Some(LAYOUT_VERSION) => Ok(()),
            Some(LAYOUT_MIGRATING) => Err(mismatch(
                "`user-accounts migrate` is rewriting the data into this release's layout, or \
                 stopped before it finished: let it finish, or run it again",
            )),
            _ => Err(mismatch(
                "Redis holds data in a layout a later release wrote: run that release",
            )),
        }
    }

    fn marker(&self, connection: &mut dyn ConnectionLike) -> RedisResult<Option<String>> {
        redis::cmd("GET").arg(&self.marker).query(connection)
    }
}

/// A refusal to run on keys of another layout, saying why.
pub(in crate::store) fn mismatch(detail: &str) -> RedisError {
    redis::make_extension_error(LAYOUT_MISMATCH.into(), Some(detail.into()))
}
