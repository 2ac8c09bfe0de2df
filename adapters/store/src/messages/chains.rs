//! [`Chains`] on the `heads`, `links` and `faults` trees: our chain's head towards each contact,
//! and each contact's chain towards us.

use parley_domain::{ChainHead, ChainState, Link, Neighbours, Username};
use parley_usecases::ports::{Chains, StoreError};
use sled::Transactional;
use sled::transaction::TransactionError;

use super::TxResult;
use crate::records::{
    corrupt, decode_count, decode_head, decode_link, link_key, split_message_key,
};
use crate::{Store, unavailable};

impl Chains for Store {
    #[tracing::instrument(name = "store.chain_head", level = "debug", skip_all, fields(%to), err(Display))]
    fn chain_head(&self, to: &Username) -> Result<ChainHead, StoreError> {
        let hkey = self.name(to);
        match self.heads.get(hkey) {
            Ok(Some(value)) => decode_head(&self.keys.open_value("heads", &hkey, &value)?),
            Ok(None) => Ok(ChainHead::EMPTY),
            Err(e) => Err(unavailable("read a chain head", e)),
        }
    }

    #[tracing::instrument(name = "store.neighbours", level = "debug", skip_all, fields(%from, seq), err(Display))]
    fn neighbours(&self, from: &Username, seq: u64) -> Result<Neighbours, StoreError> {
        let sender = self.name(from);
        let at = |seq: Option<u64>| -> Result<Option<Link>, StoreError> {
            let Some(seq) = seq else { return Ok(None) };
            let lkey = link_key(&sender, seq);
            match self.links.get(lkey) {
                Ok(Some(value)) => {
                    decode_link(seq, &self.keys.open_value("links", &lkey, &value)?).map(Some)
                }
                Ok(None) => Ok(None),
                Err(e) => Err(unavailable("read a chain", e)),
            }
        };
        Ok(Neighbours {
            before: at(seq.checked_sub(1))?,
            same: at(Some(seq))?,
            after: at(seq.checked_add(1))?,
        })
    }

    #[tracing::instrument(name = "store.chain_state", level = "debug", skip_all, fields(%from), err(Display))]
    fn chain_state(&self, from: &Username) -> Result<ChainState, StoreError> {
        let sender = self.name(from);
        let seqs = self
            .links
            .scan_prefix(sender)
            .map(|entry| {
                let (lkey, value) = entry.map_err(|e| unavailable("read a chain", e))?;
                let (_, seq) = split_message_key(&lkey)
                    .map_err(|_| corrupt("links", "a key is not a name and a position"))?;
                // Opened only to be sure the entry is ours and where it was put.
                self.keys.open_value("links", &lkey, &value)?;
                Ok(seq)
            })
            .collect::<Result<Vec<u64>, StoreError>>()?;
        let faults = match self.faults.get(sender) {
            Ok(Some(value)) => decode_count(&self.keys.open_value("faults", &sender, &value)?)?,
            Ok(None) => 0,
            Err(e) => return Err(unavailable("read a chain's faults", e)),
        };
        Ok(ChainState::of(seqs, faults))
    }

    #[tracing::instrument(name = "store.reset_chains", level = "debug", skip_all, err(Display))]
    fn reset_chains(&self, user: &Username) -> Result<(), StoreError> {
        let name = self.name(user);
        let links: Vec<sled::IVec> = self
            .links
            .scan_prefix(name)
            .keys()
            .collect::<Result<_, _>>()
            .map_err(|e| unavailable("read a chain", e))?;
        let done = (&self.links, &self.faults, &self.heads).transaction(
            |(l, faults, heads)| -> TxResult<(), StoreError> {
                for key in &links {
                    l.remove(key)?;
                }
                faults.remove(&name)?;
                heads.remove(&name)?;
                Ok(())
            },
        );
        match done {
            Ok(()) => self.flush(),
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(unavailable("forget a chain", e)),
        }
    }
}
