//! The Toom-Cook matrices of F(M, R) and their application to tiles.
use super::{L, M, N, R};

/// The nonzeros of a small matrix, row by row: (column, value).
pub(super) struct Sparse {
    rows: Vec<Vec<(usize, f32)>>,
}

impl Sparse {
    fn new(m: &[f64], rows: usize, cols: usize) -> Sparse {
        let rows = (0..rows).map(|i| (0..cols).filter(|&j| m[i * cols + j] != 0.0).map(|j| (j, m[i * cols + j] as f32)).collect()).collect();
        Sparse { rows }
    }
}

/// F(M, R) over the points 0, +-1, +-2, +-1/2 and infinity (N of them):
/// output tile A^T [(G g G^T) . (B^T d B)] A.
pub(super) struct Transform {
    /// G, N x R, dense (applied once per call to the weights).
    pub g: Vec<f32>,
    pub at: Sparse,
    pub a: Sparse,
    pub bt: Sparse,
    pub b: Sparse,
}

/// Coefficients, lowest power first, of the product of (x - p) over `ps`.
fn poly(ps: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut c = vec![1.0];
    for p in ps {
        let mut next = vec![0.0; c.len() + 1];
        for (i, &v) in c.iter().enumerate() {
            next[i + 1] += v;
            next[i] -= p * v;
        }
        c = next;
    }
    c
}

fn transposed(m: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    (0..cols * rows).map(|i| m[(i % rows) * cols + i / rows]).collect()
}

impl Transform {
    fn new() -> Transform {
        let (n, r) = (N, R);
        let pts: &[f64] = &[0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5][..n - 1];
        let others = |j: usize| pts.iter().enumerate().filter(move |(l, _)| *l != j).map(|(_, &b)| b);
        let (mut at, mut g, mut bt) = (vec![0.0; M * n], vec![0.0; n * r], vec![0.0; n * n]);
        for (j, &a) in pts.iter().enumerate() {
            (0..M).for_each(|i| at[i * n + j] = a.powi(i as i32));
            // The Lagrange normaliser of point j lives in G.
            let norm: f64 = others(j).map(|b| a - b).product();
            (0..r).for_each(|k| g[j * r + k] = a.powi(k as i32) / norm);
            poly(others(j)).iter().enumerate().for_each(|(i, &v)| bt[j * n + i] = v);
        }
        // The point at infinity: the leading coefficients.
        at[(M - 1) * n + n - 1] = 1.0;
        g[(n - 1) * r + r - 1] = 1.0;
        poly(pts.iter().copied()).iter().enumerate().for_each(|(i, &v)| bt[(n - 1) * n + i] = v);
        Transform {
            g: g.iter().map(|&v| v as f32).collect(),
            at: Sparse::new(&at, M, n),
            a: Sparse::new(&transposed(&at, M, n), n, M),
            bt: Sparse::new(&bt, n, n),
            b: Sparse::new(&transposed(&bt, n, n), n, n),
        }
    }

    pub fn get() -> &'static Transform {
        static T: std::sync::OnceLock<Transform> = std::sync::OnceLock::new();
        T.get_or_init(Transform::new)
    }

    /// U = G g G^T (N N, K, C) of `w` (K, C, R, R).
    pub fn kernel(&self, w: &[f32], kc: usize) -> Vec<f32> {
        let (n, r) = (N, R);
        let mut u = vec![0f32; n * n * kc];
        for (j, g) in w.chunks_exact(r * r).enumerate() {
            for a in 0..n {
                for b in 0..n {
                    let mut s = 0.0;
                    for i in 0..r {
                        for k in 0..r {
                            s += self.g[a * r + i] * g[i * r + k] * self.g[b * r + k];
                        }
                    }
                    u[(a * n + b) * kc + j] = s;
                }
            }
        }
        u
    }

    /// dg = G^T dU G (K, C, R, R) of `du` (N N, K, C).
    pub fn kernel_grad(&self, du: &[f32], kc: usize) -> Vec<f32> {
        let (n, r) = (N, R);
        let mut gw = vec![0f32; kc * r * r];
        for j in 0..kc {
            for i in 0..r {
                for k in 0..r {
                    let mut s = 0.0;
                    for a in 0..n {
                        for b in 0..n {
                            s += self.g[a * r + i] * du[(a * n + b) * kc + j] * self.g[b * r + k];
                        }
                    }
                    gw[(j * r + i) * r + k] = s;
                }
            }
        }
        gw
    }
}

/// A tile of lane vectors, `R` rows of `C` columns.
pub(super) type Tile<const R: usize, const C: usize> = [[[f32; L]; C]; R];

/// Fused in every kernel set, so the transforms give the same bits in all
/// (on a CPU without FMA, the baseline set's are a library call each).
#[inline(always)]
fn fma(acc: &mut [f32; L], c: f32, x: &[f32; L]) {
    for l in 0..L {
        acc[l] = c.mul_add(x[l], acc[l]);
    }
}

/// `a x b^T` for the (S, Q) tile `x`, with `a` (P, S) and `b` (Q2, Q): the
/// rows, then the columns, each output accumulated over the nonzeros only.
#[inline(always)]
pub(super) fn sandwich<const P: usize, const S: usize, const Q: usize, const Q2: usize>(a: &Sparse, x: &Tile<S, Q>, b: &Sparse) -> Tile<P, Q2> {
    let mut tmp: Tile<P, Q> = [[[0.0; L]; Q]; P];
    for (row, nz) in tmp.iter_mut().zip(&a.rows) {
        for &(t, c) in nz {
            let src = &x[t];
            for j in 0..Q {
                fma(&mut row[j], c, &src[j]);
            }
        }
    }
    let mut out: Tile<P, Q2> = [[[0.0; L]; Q2]; P];
    for (jo, nz) in b.rows.iter().enumerate() {
        let mut acc = [[0f32; L]; P];
        for &(t, c) in nz {
            for i in 0..P {
                fma(&mut acc[i], c, &tmp[i][t]);
            }
        }
        for i in 0..P {
            out[i][jo] = acc[i];
        }
    }
    out
}
