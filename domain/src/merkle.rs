//! The log as an RFC 6962 Merkle tree: leaf `i` is the commit at stream sequence
//! `i + 1`, its bytes exactly as stored. The hashing, the tree layout and the proofs
//! are `tlog_tiles`' (a port of Go's `golang.org/x/mod/sumdb/tlog`); this module only
//! decides which hashes to keep.
//!
//! Two ways to keep them:
//! - [`MerkleLog::compact`] keeps only the roots of the complete subtrees on the
//!   tree's right edge (at most 64 hashes, whatever the size): enough to append and
//!   to compute the root. The command service and `audit verify` use it.
//! - [`MerkleLog::full`] keeps every stored hash (about 64 bytes per commit): enough
//!   to prove any commit's inclusion. `audit prove` uses it.

use tlog_tiles::tlog::{self, Hash, HashReader};

pub use tlog_tiles::tlog::{Hash as MerkleHash, record_hash as leaf_hash};

/// Why a tree could not be built from what was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MerkleError {
    /// A frontier whose hash count does not fit its size.
    #[error("a tree of {size} commits has {want} right-edge hashes, not {got}")]
    Frontier {
        /// The tree's size.
        size: u64,
        /// How many it needs.
        want: usize,
        /// How many were given.
        got: usize,
    },
    /// A size past [`MerkleLog::MAX_SIZE`], whose stored-hash indexes would not fit in
    /// a `u64` (`tlog_tiles`' arithmetic would overflow on it).
    #[error("a tree of {size} commits is larger than the {max} a log can hold")]
    TooLarge {
        /// The size given.
        size: u64,
        /// The largest size.
        max: u64,
    },
    /// Proving a leaf the tree does not hold, or with a compact tree.
    #[error("cannot prove leaf {index} of a tree of {size}{why}")]
    Unprovable {
        /// The leaf.
        index: u64,
        /// The tree's size.
        size: u64,
        /// More detail.
        why: &'static str,
    },
}

#[derive(Debug, Clone)]
enum Hashes {
    /// `(stored index, hash)` of the right edge's complete subtrees, in index order.
    Frontier(Vec<(u64, Hash)>),
    /// Every stored hash, at its stored index.
    All(Vec<Hash>),
}

impl HashReader for Hashes {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog::Error> {
        indexes
            .iter()
            .map(|&i| match self {
                Hashes::All(all) => usize::try_from(i).ok().and_then(|i| all.get(i)).copied(),
                Hashes::Frontier(edge) => edge.iter().find(|(j, _)| *j == i).map(|(_, h)| *h),
            })
            .collect::<Option<Vec<_>>>()
            .ok_or(tlog::Error::IndexesNotInTree)
    }
}

/// An append-only Merkle tree over a log's commits.
#[derive(Debug, Clone)]
pub struct MerkleLog {
    size: u64,
    hashes: Hashes,
}

impl MerkleLog {
    /// The largest tree: 2^62 commits. A tree's stored hashes are numbered up to about
    /// twice its size, so beyond 2^63 their indexes overflow `u64`; the margin leaves
    /// room to append (which no log will ever come near).
    pub const MAX_SIZE: u64 = 1 << 62;

    /// An empty tree keeping only its right edge.
    pub fn compact() -> Self {
        Self {
            size: 0,
            hashes: Hashes::Frontier(Vec::new()),
        }
    }

    /// An empty tree keeping every hash, to prove inclusions.
    pub fn full() -> Self {
        Self {
            size: 0,
            hashes: Hashes::All(Vec::new()),
        }
    }

    /// A compact tree of `size` commits resumed from its [`frontier`](Self::frontier).
    pub fn from_frontier(size: u64, frontier: Vec<Hash>) -> Result<Self, MerkleError> {
        if size > Self::MAX_SIZE {
            return Err(MerkleError::TooLarge {
                size,
                max: Self::MAX_SIZE,
            });
        }
        let indexes = tlog::sub_tree_index(0, size, Vec::new());
        if indexes.len() != frontier.len() {
            return Err(MerkleError::Frontier {
                size,
                want: indexes.len(),
                got: frontier.len(),
            });
        }
        Ok(Self {
            size,
            hashes: Hashes::Frontier(indexes.into_iter().zip(frontier).collect()),
        })
    }

    /// How many commits the tree holds.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The roots of the complete subtrees on the right edge, left to right: with the
    /// size, all it takes to go on appending.
    pub fn frontier(&self) -> Vec<Hash> {
        let indexes = tlog::sub_tree_index(0, self.size, Vec::new());
        // Both kinds hold every right-edge hash (see `append`), so this read succeeds.
        self.hashes.read_hashes(&indexes).unwrap_or_default()
    }

    /// Appends the commit whose stored bytes are `commit`.
    pub fn append(&mut self, commit: &[u8]) {
        let n = self.size;
        // `stored_hashes` reads only right-edge hashes, which both kinds keep: the
        // frontier is exactly `sub_tree_index(0, n)` (set below and in
        // `from_frontier`), and `All` keeps everything. So the read cannot fail.
        let new = tlog::stored_hashes(n, commit, &self.hashes)
            .expect("the right edge of the tree is always kept");
        let first = tlog::stored_hash_index(0, n);
        self.size = n + 1;
        match &mut self.hashes {
            Hashes::All(all) => all.extend(new),
            Hashes::Frontier(edge) => {
                let keep = tlog::sub_tree_index(0, self.size, Vec::new());
                edge.extend((first..).zip(new));
                edge.retain(|(i, _)| keep.contains(i));
            }
        }
    }

    /// The tree's root hash (RFC 6962's MTH).
    pub fn root(&self) -> Hash {
        // `tree_hash` reads the right edge only: see `append`.
        tlog::tree_hash(self.size, &self.hashes).expect("the right edge of the tree is always kept")
    }

    /// The audit path proving leaf `index` is in this tree (RFC 6962's PATH). Needs a
    /// [`full`](Self::full) tree.
    pub fn prove(&self, index: u64) -> Result<Vec<Hash>, MerkleError> {
        let unprovable = |why| MerkleError::Unprovable {
            index,
            size: self.size,
            why,
        };
        if index >= self.size {
            return Err(unprovable(": it is not in the tree"));
        }
        if matches!(self.hashes, Hashes::Frontier(_)) {
            return Err(unprovable(": a compact tree keeps only its right edge"));
        }
        tlog::prove_record(self.size, index, &self.hashes)
            .map_err(|_| unprovable(": the tree's hashes are incomplete"))
    }
}

/// Whether `proof` shows that the tree of `size` leaves with root `root` holds
/// `leaf` (a [`leaf_hash`]) at `index`.
pub fn check_inclusion(proof: &[Hash], size: u64, root: Hash, index: u64, leaf: Hash) -> bool {
    tlog::check_record(&proof.to_vec(), size, root, index, leaf).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaves(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| format!("commit {i}").into_bytes()).collect()
    }

    #[test]
    fn the_empty_tree_and_a_single_leaf_hash_as_rfc_6962_says() {
        // MTH({}) = SHA-256(""); MTH({d}) = SHA-256(0x00 || d).
        assert_eq!(
            hex::encode(MerkleLog::compact().root().0),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let mut log = MerkleLog::compact();
        log.append(b"");
        assert_eq!(
            hex::encode(log.root().0),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
    }

    #[test]
    fn the_certificate_transparency_test_vector_hashes_alike() {
        // The eight leaves and the root of Certificate Transparency's reference tests.
        let leaves = [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ];
        let mut log = MerkleLog::compact();
        leaves
            .iter()
            .for_each(|l| log.append(&hex::decode(l).unwrap()));
        assert_eq!(
            hex::encode(log.root().0),
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
        );
    }

    proptest! {
        #[test]
        fn compact_and_full_trees_agree_and_resume_from_their_frontier(n in 0usize..300) {
            let (mut compact, mut full) = (MerkleLog::compact(), MerkleLog::full());
            for (i, leaf) in leaves(n).iter().enumerate() {
                compact.append(leaf);
                full.append(leaf);
                prop_assert_eq!(compact.root(), full.root(), "after {} leaves", i + 1);
            }
            prop_assert!(compact.frontier().len() <= 64);
            let mut resumed = MerkleLog::from_frontier(compact.size(), compact.frontier()).unwrap();
            resumed.append(b"next");
            full.append(b"next");
            prop_assert_eq!(resumed.root(), full.root());
        }

        #[test]
        fn every_leaf_proves_and_no_other_leaf_does(n in 1usize..200, pick in any::<prop::sample::Index>()) {
            let mut tree = MerkleLog::full();
            let data = leaves(n);
            data.iter().for_each(|l| tree.append(l));
            let index = pick.index(n) as u64;
            let proof = tree.prove(index).unwrap();
            let root = tree.root();
            prop_assert!(check_inclusion(&proof, tree.size(), root, index, leaf_hash(&data[index as usize])));
            prop_assert!(!check_inclusion(&proof, tree.size(), root, index, leaf_hash(b"forged")));
            if n > 1 {
                let other = (index + 1) % n as u64;
                prop_assert!(!check_inclusion(&proof, tree.size(), root, other, leaf_hash(&data[index as usize])));
            }
        }

        #[test]
        fn changing_any_leaf_changes_the_root(n in 1usize..100, pick in any::<prop::sample::Index>()) {
            let data = leaves(n);
            let changed = pick.index(n);
            let (mut a, mut b) = (MerkleLog::compact(), MerkleLog::compact());
            for (i, leaf) in data.iter().enumerate() {
                a.append(leaf);
                b.append(if i == changed { b"altered" } else { leaf });
            }
            prop_assert_ne!(a.root(), b.root());
        }
    }

    #[test]
    fn a_frontier_of_the_wrong_length_is_refused_and_compact_trees_do_not_prove() {
        assert!(matches!(
            MerkleLog::from_frontier(3, vec![]),
            Err(MerkleError::Frontier {
                want: 2,
                got: 0,
                ..
            })
        ));
        let mut log = MerkleLog::compact();
        log.append(b"a");
        assert!(log.prove(0).is_err());
        assert!(MerkleLog::full().prove(0).is_err());
    }

    #[test]
    fn a_size_past_the_largest_tree_is_refused_not_a_panic() {
        // Past 2^63, tlog_tiles' index arithmetic overflowed (a panic in a debug build).
        for size in [MerkleLog::MAX_SIZE + 1, (1 << 63) + 2, u64::MAX] {
            assert_eq!(
                MerkleLog::from_frontier(size, vec![]).unwrap_err(),
                MerkleError::TooLarge {
                    size,
                    max: MerkleLog::MAX_SIZE
                }
            );
        }
        // The largest tree resumes from its frontier, appends and has a root.
        let edge = tlog::sub_tree_index(0, MerkleLog::MAX_SIZE, Vec::new()).len();
        let mut log =
            MerkleLog::from_frontier(MerkleLog::MAX_SIZE, vec![leaf_hash(b"x"); edge]).unwrap();
        log.append(b"next");
        assert_eq!(log.size(), MerkleLog::MAX_SIZE + 1);
        let _ = log.root();
    }
}
