/* A C program built against an installed longattn, once through find_package(longattn CONFIG)
 * and once through pkg-config: proves the package files work and that longattn.h is plain C. */
#include <longattn/longattn.h>
#include <math.h>
#include <stdio.h>

int main(void) {
  enum { L = 5, D = 8 };
  float q[L * D], k[L * D], v[L * D], o[L * D];
  for (int i = 0; i < L * D; ++i) {
    q[i] = (float)((i * 7) % 11) / 11.f;
    k[i] = (float)((i * 5) % 13) / 13.f;
    v[i] = (float)i;
  }
  longattn_args a;
  longattn_args_init(&a);
  a.q_len = a.kv_len = L;
  a.head_dim_qk = a.head_dim_v = D;
  longattn_set_contiguous_strides(&a);
  a.q = q;
  a.k = k;
  a.v = v;
  a.o = o;
  a.causal = 1;
  longattn_options opt;
  longattn_options_init(&opt);
  longattn_plan plan;
  if (longattn_attention(&a, &opt, &plan) != LONGATTN_OK) {
    fprintf(stderr, "longattn_attention failed: %s\n", longattn_last_error());
    return 1;
  }
  /* Causal row 0 sees only key 0, so it is exactly V[0]. */
  for (int d = 0; d < D; ++d)
    if (fabsf(o[d] - v[d]) > 1e-6f) return 1;
  printf("longattn %s: %s\n", longattn_version(), plan.reason);
  a.kv_heads = 3; /* q_heads = 1 is not a multiple of 3 */
  if (longattn_attention(&a, &opt, &plan) != LONGATTN_INVALID_ARGUMENT) return 1;
  printf("error path: %s\n", longattn_last_error());
  return 0;
}
