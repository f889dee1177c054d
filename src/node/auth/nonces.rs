//! The replay cache of a [`NodeVerifier`](super::NodeVerifier): the nonces of the signatures
//! it admitted, each kept until its signature's timestamp falls out of the window.

use std::collections::{BTreeSet, HashMap};

use super::{AuthError, NONCE_LEN};

/// Most nonces a verifier remembers. Each takes roughly 100 bytes (a map entry and an
/// ordered-set entry), so a full cache holds about 20 MB; it fills only at more than 3,000
/// admitted requests a second, sustained over a whole window.
pub const MAX_NONCES: usize = 200_000;

type Nonce = [u8; NONCE_LEN];

/// The nonces admitted and still inside the window, with when each leaves it.
///
/// Bounded: when it holds its capacity of unexpired nonces, new requests are refused
/// ([`AuthError::Full`], a 503 the caller may retry) rather than an unexpired nonce
/// forgotten, which would let its request be replayed.
#[derive(Debug)]
pub(super) struct Nonces {
    capacity: usize,
    /// Nonce → the last second its signature is accepted.
    expiry_of: HashMap<Nonce, u64>,
    /// The same entries, soonest expiry first, for pruning.
    by_expiry: BTreeSet<(u64, Nonce)>,
}

impl Nonces {
    /// An empty cache holding at most `capacity` nonces.
    pub(super) fn new(capacity: usize) -> Nonces {
        Nonces {
            capacity,
            expiry_of: HashMap::new(),
            by_expiry: BTreeSet::new(),
        }
    }

    /// Admits `nonce`, accepted until second `expires`, at `now`: forgets the nonces past
    /// their expiry first, then refuses one still remembered ([`AuthError::Replayed`]) or,
    /// when the cache is full, any new one ([`AuthError::Full`]).
    pub(super) fn admit(&mut self, nonce: Nonce, expires: u64, now: u64) -> Result<(), AuthError> {
        self.prune(now);
        if self.expiry_of.contains_key(&nonce) {
            return Err(AuthError::Replayed);
        }
        if self.expiry_of.len() >= self.capacity {
            return Err(AuthError::Full(self.capacity));
        }
        self.expiry_of.insert(nonce, expires);
        self.by_expiry.insert((expires, nonce));
        Ok(())
    }

    /// Forgets every nonce whose signature can no longer be accepted at `now`.
    fn prune(&mut self, now: u64) {
        while let Some(&(expires, nonce)) = self.by_expiry.first() {
            if expires >= now {
                break;
            }
            self.by_expiry.pop_first();
            self.expiry_of.remove(&nonce);
        }
    }

    /// How many nonces are remembered.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.expiry_of.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_refused_until_it_expires_and_a_full_cache_refuses_new_ones() {
        let mut nonces = Nonces::new(2);
        assert_eq!(nonces.admit([1; 16], 130, 100), Ok(()));
        assert_eq!(nonces.admit([1; 16], 130, 100), Err(AuthError::Replayed));
        // Still refused on its last second.
        assert_eq!(nonces.admit([1; 16], 160, 130), Err(AuthError::Replayed));
        assert_eq!(nonces.admit([2; 16], 140, 101), Ok(()));
        assert_eq!(nonces.admit([3; 16], 140, 102), Err(AuthError::Full(2)));
        assert_eq!(nonces.len(), 2);
        // Past the first one's expiry it is forgotten, which makes room.
        assert_eq!(nonces.admit([3; 16], 161, 131), Ok(()));
        assert_eq!(nonces.len(), 2);
        assert_eq!(nonces.admit([1; 16], 161, 131), Err(AuthError::Full(2)));
        assert_eq!(nonces.admit([4; 16], 200, 170), Ok(()));
        assert_eq!(nonces.len(), 1);
    }
}
