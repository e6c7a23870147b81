/* arch.c — the table from architecture id to its pieces. */
#include "sae/arch.h"

extern const lp_sae_ops lp_sae_ops_relu, lp_sae_ops_topk, lp_sae_ops_batchtopk, lp_sae_ops_jumprelu;
extern const lp_sae_ops lp_sae_ops_hiertopk, lp_sae_ops_kron, lp_sae_ops_boost;

const lp_sae_ops *lp_sae_ops_for(int arch) {
    switch (arch) {
    case LP_SAE_RELU: return &lp_sae_ops_relu;
    case LP_SAE_BATCHTOPK: return &lp_sae_ops_batchtopk;
    case LP_SAE_JUMPRELU: return &lp_sae_ops_jumprelu;
    case LP_SAE_HIERTOPK: return &lp_sae_ops_hiertopk;
    case LP_SAE_KRON: return &lp_sae_ops_kron;
    case LP_SAE_BOOST: return &lp_sae_ops_boost;
    default: return &lp_sae_ops_topk;
    }
}
