//! NumPy's seeding and PCG64 generator, bit for bit: what Gymnasium's `env.np_random` is
//! (`gymnasium.utils.seeding.np_random(seed)` = `Generator(PCG64(SeedSequence(seed)))`).
//!
//! Ported from NumPy 2.x (`numpy/random/bit_generator.pyx`: `SeedSequence`;
//! `numpy/random/src/pcg64/pcg64.{h,c}`: PCG64, the XSL-RR 128/64 generator of O'Neill's PCG
//! family; `numpy/random/src/distributions/distributions.c`: `next_double`, `uniform`) so
//! that a start state drawn here equals Gymnasium's for the same seed. The environments still
//! draw their resets from [`crate::env`]'s own generator; switching them over changes every
//! recorded dataset hash, which is issue 17's step (see `datasets/README.md` when it lands).
//!
//! ```
//! use orl_envs::np_random::NpRandom;
//! // numpy: np.random.Generator(np.random.PCG64(np.random.SeedSequence(42))).uniform(-0.05, 0.05)
//! let mut rng = NpRandom::from_seed(42);
//! assert_eq!(rng.uniform(-0.05, 0.05).to_bits(), 0x3f9c0d97eba2bd40);
//! ```

/// Words in a `SeedSequence`'s entropy pool (NumPy's `DEFAULT_POOL_SIZE`).
const POOL_SIZE: usize = 4;
const INIT_A: u32 = 0x43b0_d7e5;
const MULT_A: u32 = 0x931e_8875;
const INIT_B: u32 = 0x8b51_f9dd;
const MULT_B: u32 = 0x58f3_8ded;
const MIX_MULT_L: u32 = 0xca01_f9dd;
const MIX_MULT_R: u32 = 0x4973_f715;
const XSHIFT: u32 = 16;

/// NumPy's `SeedSequence(seed)` for a non-negative integer seed (no spawn key), reduced to
/// what seeding a generator needs: its mixed entropy pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedSequence {
    pool: [u32; POOL_SIZE],
}

fn hashmix(value: u32, hash_const: &mut u32) -> u32 {
    let mut v = value ^ *hash_const;
    *hash_const = hash_const.wrapping_mul(MULT_A);
    v = v.wrapping_mul(*hash_const);
    v ^ (v >> XSHIFT)
}

fn mix(x: u32, y: u32) -> u32 {
    let r = MIX_MULT_L
        .wrapping_mul(x)
        .wrapping_sub(MIX_MULT_R.wrapping_mul(y));
    r ^ (r >> XSHIFT)
}

impl SeedSequence {
    /// The sequence of integer seed `seed`: its 32-bit words, least significant first (at
    /// least one), mixed into the pool as `SeedSequence.mix_entropy` does.
    pub fn new(seed: u64) -> Self {
        let entropy: Vec<u32> = if seed >> 32 == 0 {
            vec![seed as u32]
        } else {
            vec![seed as u32, (seed >> 32) as u32]
        };
        let mut pool = [0u32; POOL_SIZE];
        let mut hash_const = INIT_A;
        for (i, slot) in pool.iter_mut().enumerate() {
            *slot = hashmix(entropy.get(i).copied().unwrap_or(0), &mut hash_const);
        }
        for src in 0..POOL_SIZE {
            for dst in 0..POOL_SIZE {
                if src != dst {
                    let h = hashmix(pool[src], &mut hash_const);
                    pool[dst] = mix(pool[dst], h);
                }
            }
        }
        for &word in entropy.iter().skip(POOL_SIZE) {
            for slot in pool.iter_mut() {
                let h = hashmix(word, &mut hash_const);
                *slot = mix(*slot, h);
            }
        }
        Self { pool }
    }
    /// The mixed entropy pool (`SeedSequence.pool`).
    pub fn pool(&self) -> [u32; POOL_SIZE] {
        self.pool
    }
    /// `generate_state(n, np.uint64)`: `2n` 32-bit words drawn from the pool, paired little
    /// endian into `n` 64-bit words.
    pub fn generate_state_u64(&self, n: usize) -> Vec<u64> {
        let mut hash_const = INIT_B;
        let words: Vec<u32> = (0..2 * n)
            .map(|i| {
                let mut v = self.pool[i % POOL_SIZE] ^ hash_const;
                hash_const = hash_const.wrapping_mul(MULT_B);
                v = v.wrapping_mul(hash_const);
                v ^ (v >> XSHIFT)
            })
            .collect();
        words
            .chunks_exact(2)
            .map(|w| u64::from(w[0]) | (u64::from(w[1]) << 32))
            .collect()
    }
}

/// PCG's 128-bit LCG multiplier (`PCG_DEFAULT_MULTIPLIER_128`).
const PCG_MULT: u128 = (2_549_297_995_355_413_924u128 << 64) | 4_865_540_595_714_422_341u128;

/// NumPy's `PCG64` bit generator: a 128-bit LCG with the XSL-RR output function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pcg64 {
    state: u128,
    inc: u128,
}

impl Pcg64 {
    /// `PCG64(seed_seq)`: four 64-bit words of `generate_state`, the first two the initial
    /// state (high word first), the last two the stream (`pcg64_set_seed`, `pcg_setseq_128_srandom_r`).
    pub fn from_seed_sequence(ss: &SeedSequence) -> Self {
        let v = ss.generate_state_u64(4);
        let initstate = (u128::from(v[0]) << 64) | u128::from(v[1]);
        let initseq = (u128::from(v[2]) << 64) | u128::from(v[3]);
        let mut rng = Self {
            state: 0,
            inc: (initseq << 1) | 1,
        };
        rng.step();
        rng.state = rng.state.wrapping_add(initstate);
        rng.step();
        rng
    }
    fn step(&mut self) {
        self.state = self.state.wrapping_mul(PCG_MULT).wrapping_add(self.inc);
    }
    /// The next 64 random bits (`random_raw`).
    pub fn next_u64(&mut self) -> u64 {
        self.step();
        let s = self.state;
        let xored = ((s >> 64) as u64) ^ (s as u64);
        xored.rotate_right((s >> 122) as u32)
    }
    /// A double in `[0, 1)` from the top 53 bits (`next_double`).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0)
    }
}

/// `numpy.random.Generator(PCG64(SeedSequence(seed)))`, with the draws Gymnasium's resets use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpRandom(Pcg64);

impl NpRandom {
    /// The generator of integer seed `seed` (Gymnasium's `np_random(seed)`).
    pub fn from_seed(seed: u64) -> Self {
        Self(Pcg64::from_seed_sequence(&SeedSequence::new(seed)))
    }
    /// `uniform(low, high)`: `low + (high - low) * next_double` (NumPy's `random_uniform`).
    /// With `size=n` NumPy makes `n` such draws in order.
    pub fn uniform(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.0.next_f64()
    }
    /// The underlying bit generator.
    pub fn bits(&mut self) -> &mut Pcg64 {
        &mut self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference values printed by NumPy 2.4.6 (in `target/speed/venv`):
    ///
    /// ```python
    /// import numpy as np, struct
    /// for seed in [0, 42, 2**40 + 5, 7000000]:
    ///     ss = np.random.SeedSequence(seed)
    ///     raw = np.random.PCG64(np.random.SeedSequence(seed)).random_raw(3)
    ///     g = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed)))
    ///     u = [struct.unpack('<Q', struct.pack('<d', x))[0] for x in g.uniform(-0.05, 0.05, size=3)]
    ///     print(seed, list(ss.pool), list(raw), [hex(b) for b in u])
    /// ```
    /// `(seed, pool, random_raw(3), bits of uniform(-0.05, 0.05, size=3))`.
    type Reference = (u64, [u32; 4], [u64; 3], [u64; 3]);

    const NUMPY: [Reference; 4] = [
        (
            0,
            [4265667335, 1328953910, 1320288413, 3365567143],
            [
                11749869230777074271,
                4976686463289251617,
                755828109848996024,
            ],
            [0x3f8c0cbca647ced0, 0xbf9792e736320f47, 0xbfa7808d4489d6d2],
        ),
        (
            42,
            [1662858758, 128880814, 1875164712, 753753205],
            [
                14276969152011380360,
                8095878257575067585,
                15838336090824644132,
            ],
            [0x3f9c0d97eba2bd40, 0xbf79090f63c0b010, 0x3fa25c36f3afc536],
        ),
        (
            1_099_511_627_781,
            [2635101428, 3437552004, 3468235908, 3153711952],
            [87427594128977387, 6872972437549564694, 10832470946844950135],
            [0xbfa95b7a9cff466c, 0xbf8a183cc93d7234, 0x3f81dd558beebef8],
        ),
        (
            7_000_000,
            [1820814170, 4202153017, 3156969984, 2495500865],
            [
                14598089751270294426,
                15444824634803498983,
                3376334944920749274,
            ],
            [0x3f9dd5eee9f64b68, 0x3fa1449ba291886e, 0xbfa03a91d9eaa6f4],
        ),
    ];

    #[test]
    fn seed_sequence_pcg64_and_uniform_match_numpy_bit_for_bit() {
        for (seed, pool, raw, uniform) in NUMPY {
            let ss = SeedSequence::new(seed);
            assert_eq!(ss.pool(), pool, "pool of seed {seed}");
            let mut bits = Pcg64::from_seed_sequence(&ss);
            let got: Vec<u64> = (0..3).map(|_| bits.next_u64()).collect();
            assert_eq!(got, raw, "random_raw of seed {seed}");
            let mut g = NpRandom::from_seed(seed);
            let got: Vec<u64> = (0..3).map(|_| g.uniform(-0.05, 0.05).to_bits()).collect();
            assert_eq!(got, uniform, "uniform of seed {seed}");
        }
    }

    #[test]
    fn seed_sequence_state_matches_numpy() {
        // np.random.SeedSequence(42).generate_state(4, np.uint64)
        assert_eq!(
            SeedSequence::new(42).generate_state_u64(4),
            [
                11465652750463011511,
                15382171918060459190,
                9018504550953525431,
                3703499796004394495
            ]
        );
    }
}
