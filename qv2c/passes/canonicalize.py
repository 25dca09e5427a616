"""`canonicalize`: the standard clean-up every freshly imported model goes through.

    CANONICALIZE = ["fold-constants", "matmul-to-gemm", "fold-batchnorm", "drop-identity", "fold-pad",
                    "fold-channel-permutation", "dce"]

Constants are folded first so batch-norm parameters and weights computed in the
graph are constants by the time `matmul-to-gemm` and `fold-batchnorm` look for them
(a dense layer exported as MatMul is a gemm before a batch norm after it is folded); identities are
dropped after it because decomposed batch norms may be `* 1 + 0`; `fold-pad` comes
after both, so an identity standing between a pad and its conv is gone and a pad of
a constant has been folded into the constant; `fold-channel-permutation` comes after
`fold-pad` (a pad between a channel shuffle and its conv is then part of the conv) and
after `fold-batchnorm` (it permutes the final weights); `dce` removes what all of them left
behind. Use the list with `PassManager` (verified after each pass) or run the single
registered `canonicalize` pass, which runs them in order without verifying in between.

    before:  %c = qv.conv(%x, %w) {...} : f32[1,8,8,8]
             %b = qv.batchnorm(%c, %g, %beta, %m, %v) {epsilon = 1e-05} : f32[1,8,8,8]
             %f = qv.reshape(%b) {shape = [1, 8, 8, 8]} : f32[1,8,8,8]
             output %f
    after:   %f = qv.conv(%x, %w_bnfolded, %w_bnfolded_bias) {...} : f32[1,8,8,8]
             output %f
"""

from __future__ import annotations

from qv2c.ir.core import Module
from qv2c.passes.registry import get_pass, register_pass

CANONICALIZE = ["fold-constants", "matmul-to-gemm", "fold-batchnorm", "drop-identity", "fold-pad",
                "fold-channel-permutation", "dce"]


@register_pass("canonicalize")
def run(module: Module) -> None:
    """Run the `CANONICALIZE` passes in order."""
    for name in CANONICALIZE:
        get_pass(name)(module)
