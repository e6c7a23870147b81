/* arch.c — the table from architecture id to its pieces. */
#include "sae/arch.h"

extern const lp_sae_ops lp_sae_ops_relu, lp_sae_ops_topk, lp_sae_ops_batchtopk, lp_sae_ops_jumprelu;

const lp_sae_ops *lp_sae_ops_for(int arch) {
    switch (arch) {
    case LP_SAE_RELU: return &lp_sae_ops_relu;
    case LP_SAE_BATCHTOPK: return &lp_sae_ops_batchtopk;
    case LP_SAE_JUMPRELU: return &lp_sae_ops_jumprelu;
    default: return &lp_sae_ops_topk;
    }
}
