//! An ensemble of `E` Q-functions on the engine: `Q_e(s, a)` over `concat(s, a)` (continuous)
//! or `Q_e(s, .)` over `s` (discrete), the layout and names of [`crate::QEnsemble`].
//!
//! ```text
//! x = [s | a]  [B, obs + act]      Q = f(x)  [E, B]
//! dL/da = (sum_e dL/dQ_e df_e/dx)[:, obs..]     (only when asked: actor losses through Q)
//! ```

use crate::engine::backend::Backend;
use crate::engine::mlp::{Activation, Input, Mlp, MlpCache};
use crate::engine::params::{Params, ParamsBuilder};
use crate::error::Result;

/// `E` critics.
#[derive(Debug, Clone)]
pub struct QNet {
    /// The ensemble MLP (one output per member, or one per discrete action).
    pub net: Mlp,
    obs_dim: usize,
    act_dim: usize,
}

/// Buffers of one [`QNet`] at one batch size.
#[derive(Debug, Clone, Default)]
pub struct QCache {
    x: Vec<f32>,
    dx: Vec<f32>,
    /// The MLP's activations and gradient buffers.
    pub mlp: MlpCache,
}

/// Buffers of one [`QNet`] on backend `B` ([`QNet::q_on`], [`QNet::backward_on`]).
pub struct QBufs<B: Backend> {
    x: B::Buf,
    dx: B::Buf,
    /// The MLP's activations on `B`.
    pub mlp: B::Cache,
}

impl<B: Backend> Default for QBufs<B> {
    fn default() -> Self {
        Self {
            x: B::Buf::default(),
            dx: B::Buf::default(),
            mlp: B::Cache::default(),
        }
    }
}

impl QNet {
    /// `members` critics over `concat(s, a)` with one output.
    pub fn continuous(
        pb: &mut ParamsBuilder<'_>,
        members: usize,
        obs_dim: usize,
        act_dim: usize,
        hidden: &[usize],
    ) -> Result<Self> {
        Ok(Self {
            net: Mlp::ensemble(
                pb,
                members,
                obs_dim + act_dim,
                hidden,
                1,
                Activation::Identity,
            )?,
            obs_dim,
            act_dim,
        })
    }
    /// `members` critics over `s` with one output per discrete action.
    pub fn discrete(
        pb: &mut ParamsBuilder<'_>,
        members: usize,
        obs_dim: usize,
        n_actions: usize,
        hidden: &[usize],
    ) -> Result<Self> {
        Ok(Self {
            net: Mlp::ensemble(
                pb,
                members,
                obs_dim,
                hidden,
                n_actions,
                Activation::Identity,
            )?,
            obs_dim,
            act_dim: 0,
        })
    }
    /// Members `E`.
    pub fn members(&self) -> usize {
        self.net.members()
    }
    /// `Q_e(s_b, a_b)` `[E, B]` (continuous), left in `cache.mlp.output()`.
    pub fn q<'c>(
        &self,
        p: &Params,
        s: &[f32],
        a: &[f32],
        batch: usize,
        cache: &'c mut QCache,
    ) -> &'c [f32] {
        self.q_first(p, s, a, batch, self.members(), cache)
    }
    /// [`QNet::q`] of the first `k` members only, `[k, B]` (TD3's actor loss reads `Q_1`).
    pub fn q_first<'c>(
        &self,
        p: &Params,
        s: &[f32],
        a: &[f32],
        batch: usize,
        k: usize,
        cache: &'c mut QCache,
    ) -> &'c [f32] {
        let (o, d) = (self.obs_dim, self.act_dim);
        cache.x.resize(batch * (o + d), 0.0);
        for ((row, s), a) in cache
            .x
            .chunks_exact_mut(o + d)
            .zip(s.chunks_exact(o))
            .zip(a.chunks_exact(d))
        {
            row[..o].copy_from_slice(s);
            row[o..].copy_from_slice(a);
        }
        self.net
            .forward_first(p, &cache.x, Input::Shared, batch, k, &mut cache.mlp);
        cache.mlp.output()
    }
    /// `Q_e(s_b, .)` `[E, B, n]` (discrete).
    pub fn q_all<'c>(
        &self,
        p: &Params,
        s: &[f32],
        batch: usize,
        cache: &'c mut QCache,
    ) -> &'c [f32] {
        self.net.forward(p, s, Input::Shared, batch, &mut cache.mlp);
        cache.mlp.output()
    }
    /// Backward after [`QNet::q`], `dL/dQ` written into `cache.mlp.dout_mut()`: parameter
    /// gradients into `grads` when given, `dL/da` `[B, act]` into `da` when given.
    pub fn backward(
        &self,
        p: &Params,
        cache: &mut QCache,
        grads: Option<&mut [f32]>,
        da: Option<&mut [f32]>,
    ) {
        let (o, d) = (self.obs_dim, self.act_dim);
        let batch = cache.mlp.batch();
        match da {
            None => self
                .net
                .backward(p, &cache.x, Input::Shared, &mut cache.mlp, grads, None),
            Some(da) => {
                cache.dx.resize(batch * (o + d), 0.0);
                self.net.backward(
                    p,
                    &cache.x,
                    Input::Shared,
                    &mut cache.mlp,
                    grads,
                    Some(&mut cache.dx),
                );
                for (da, row) in da.chunks_exact_mut(d).zip(cache.dx.chunks_exact(o + d)) {
                    da.copy_from_slice(&row[o..]);
                }
            }
        }
    }
    /// Backward after [`QNet::q_all`] on the same `s`.
    pub fn backward_all(&self, p: &Params, s: &[f32], cache: &mut QCache, grads: &mut [f32]) {
        self.net
            .backward(p, s, Input::Shared, &mut cache.mlp, Some(grads), None);
    }

    /// [`QNet::q_first`] on backend `be`: `Q_e(s_b, a_b)` of the first `k` members, `[k * B, 1]`
    /// (continuous).
    #[allow(clippy::too_many_arguments)]
    pub fn q_on<'c, B: Backend>(
        &self,
        be: &B,
        p: &B::Params,
        s: &B::Buf,
        a: &B::Buf,
        batch: usize,
        k: usize,
        c: &'c mut QBufs<B>,
    ) -> Result<&'c B::Buf> {
        be.concat_cols(s, self.obs_dim, a, self.act_dim, &mut c.x)?;
        be.mlp_forward_first(&self.net, p, &c.x, Input::Shared, batch, k, &mut c.mlp)?;
        Ok(be.mlp_output(&c.mlp))
    }
    /// [`QNet::backward`] on backend `be` after [`QNet::q_on`], from `dq = dL/dQ` `[k * B, 1]`:
    /// parameter gradients into `grads` when given, `dL/da` `[B, act]` into `da` when given.
    pub fn backward_on<B: Backend>(
        &self,
        be: &B,
        p: &B::Params,
        c: &mut QBufs<B>,
        dq: &B::Buf,
        grads: Option<&mut B::Buf>,
        da: Option<&mut B::Buf>,
    ) -> Result<()> {
        let (o, d) = (self.obs_dim, self.act_dim);
        match da {
            None => be.mlp_backward(
                &self.net,
                p,
                &c.x,
                Input::Shared,
                &mut c.mlp,
                dq,
                grads,
                None,
            ),
            Some(da) => {
                be.mlp_backward(
                    &self.net,
                    p,
                    &c.x,
                    Input::Shared,
                    &mut c.mlp,
                    dq,
                    grads,
                    Some(&mut c.dx),
                )?;
                be.cols(&c.dx, o + d, o, d, da)
            }
        }
    }
    /// [`QNet::q_all`] on backend `be`: `Q_e(s_b, .)` `[E * B, n]` (discrete).
    pub fn q_all_on<'c, B: Backend>(
        &self,
        be: &B,
        p: &B::Params,
        s: &B::Buf,
        batch: usize,
        c: &'c mut QBufs<B>,
    ) -> Result<&'c B::Buf> {
        be.mlp_forward(&self.net, p, s, Input::Shared, batch, &mut c.mlp)?;
        Ok(be.mlp_output(&c.mlp))
    }
    /// [`QNet::backward_all`] on backend `be` after [`QNet::q_all_on`] on the same `s`, from
    /// `dq = dL/dQ` `[E * B, n]`.
    pub fn backward_all_on<B: Backend>(
        &self,
        be: &B,
        p: &B::Params,
        s: &B::Buf,
        c: &mut QBufs<B>,
        dq: &B::Buf,
        grads: &mut B::Buf,
    ) -> Result<()> {
        be.mlp_backward(
            &self.net,
            p,
            s,
            Input::Shared,
            &mut c.mlp,
            dq,
            Some(grads),
            None,
        )
    }
}
