// Runs one kernel of kernels/ on f32 files and writes its outputs:
//   harness depthwise N C H W K STRIDE DILATION PAD_TOP PAD_LEFT OUT_H OUT_W RELU X WT GY  Y GX GW
//   harness pool      N C H W K STRIDE PAD_TOP PAD_LEFT OUT_H OUT_W IS_MAX X GY  Y GX
//   harness sgd       N LR MU WD LR_WD DECOUPLED MOMENTUM NESTEROV W G V  W' V'
//   harness bn        N C HW EPS RELU X GAMMA BETA GY  Y STATS SUMS GX
//   harness sgdall    COUNT N_1 .. N_COUNT LR MU WD LR_WD DECOUPLED MOMENTUM NESTEROV MAX_NORM W G V  W' V' COEF
//                     (W, G, V: every variable's values one after another)
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

float partial[1];  // the weight gradient's shared memory, one thread per block
double block_partial[1];  // kernels/reduce.cuh's shared memory

#include "../../kernels/geometry.cuh"
extern "C" void depthwise_fwd_f32(const float*, const float*, float*, Geometry, int);
extern "C" void depthwise_bwd_input_f32(const float*, const float*, const float*, float*, Geometry, int);
extern "C" void depthwise_bwd_weight_f32(const float*, const float*, float*, Geometry, int);
extern "C" void pool_fwd_f32(const float*, float*, Geometry, int);
extern "C" void pool_bwd_f32(const float*, const float*, float*, Geometry, int);
extern "C" void sgd_velocity_f32(float*, const float*, const float*, long, float, float, int);
extern "C" void sgd_weight_f32(float*, const float*, const float*, long, float, float, float, float, int, int, int);
struct SgdEntry { float* w; const float* g; float* v; long long n; };
extern "C" void grad_sq_sums_f32(const SgdEntry*, double*);
extern "C" void clip_coefficient_f32(const double*, int, double, float*);
extern "C" void sgd_all_f32(const SgdEntry*, const float*, float, float, float, float, int, int, int);
extern "C" void bn_stats_f32(const float*, float*, int, int, int);
extern "C" void bn_apply_f32(const float*, const float*, const float*, const float*, float*, int, int, int, float, int);
extern "C" void bn_grad_sums_f32(const float*, const float*, const float*, const float*, float*, int, int, int, float, int);
extern "C" void bn_grad_input_f32(const float*, const float*, const float*, const float*, const float*, const float*, float*, int, int, int, float, int);

static std::vector<float> load(const char* path, size_t n) {
    std::vector<float> v(n);
    FILE* f = fopen(path, "rb");
    if (!f || fread(v.data(), 4, n, f) != n) { fprintf(stderr, "cannot read %s\n", path); exit(2); }
    fclose(f);
    return v;
}

static void save(const char* path, const std::vector<float>& v) {
    FILE* f = fopen(path, "wb");
    if (!f || fwrite(v.data(), 4, v.size(), f) != v.size()) { fprintf(stderr, "cannot write %s\n", path); exit(2); }
    fclose(f);
}

// One launch: `blocks` blocks of one thread each.
template <class F> static void launch(unsigned blocks, F kernel) {
    gridDim.x = blocks;
    blockDim.x = 1;
    threadIdx.x = 0;
    for (unsigned b = 0; b < blocks; ++b) { blockIdx.x = b; kernel(); }
}

// A two-dimensional grid, blocks in turn.
template <class F> static void launch2(unsigned gx, unsigned gy, F kernel) {
    gridDim.x = gx;
    gridDim.y = gy;
    blockDim.x = 1;
    threadIdx.x = 0;
    for (unsigned y = 0; y < gy; ++y) {
        for (unsigned x = 0; x < gx; ++x) { blockIdx.x = x; blockIdx.y = y; kernel(); }
    }
    gridDim.y = 0;
    blockIdx.y = 0;
}

int main(int argc, char** argv) {
    if (argc > 1 && !strcmp(argv[1], "depthwise") && argc == 20) {
        int a[12];
        for (int i = 0; i < 12; ++i) a[i] = atoi(argv[2 + i]);
        Geometry g{a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10]};
        int relu = a[11];
        size_t nx = (size_t)g.n * g.c * g.h * g.w, nw = (size_t)g.c * g.k * g.k, ny = (size_t)g.n * g.c * g.out_h * g.out_w;
        auto x = load(argv[14], nx), wt = load(argv[15], nw), gy = load(argv[16], ny);
        std::vector<float> y(ny), gx(nx), gw(nw);
        launch(1, [&] { depthwise_fwd_f32(x.data(), wt.data(), y.data(), g, relu); });
        launch(1, [&] { depthwise_bwd_input_f32(gy.data(), wt.data(), x.data(), gx.data(), g, relu); });
        launch(g.c * g.k * g.k, [&] { depthwise_bwd_weight_f32(x.data(), gy.data(), gw.data(), g, relu); });
        save(argv[17], y);
        save(argv[18], gx);
        save(argv[19], gw);
        return 0;
    }
    if (argc > 1 && !strcmp(argv[1], "pool") && argc == 17) {
        int a[11];
        for (int i = 0; i < 11; ++i) a[i] = atoi(argv[2 + i]);
        Geometry g{a[0], a[1], a[2], a[3], a[4], a[5], 1, a[6], a[7], a[8], a[9]};
        int is_max = a[10];
        size_t nx = (size_t)g.n * g.c * g.h * g.w, ny = (size_t)g.n * g.c * g.out_h * g.out_w;
        auto x = load(argv[13], nx), gy = load(argv[14], ny);
        std::vector<float> y(ny), gx(nx);
        launch(1, [&] { pool_fwd_f32(x.data(), y.data(), g, is_max); });
        launch(1, [&] { pool_bwd_f32(x.data(), gy.data(), gx.data(), g, is_max); });
        save(argv[15], y);
        save(argv[16], gx);
        return 0;
    }
    if (argc > 1 && !strcmp(argv[1], "sgd") && argc == 15) {
        long n = atol(argv[2]);
        float lr = atof(argv[3]), mu = atof(argv[4]), wd = atof(argv[5]), lr_wd = atof(argv[6]);
        int decoupled = atoi(argv[7]), momentum = atoi(argv[8]), nesterov = atoi(argv[9]);
        auto w = load(argv[10], n), g = load(argv[11], n), v = load(argv[12], n);
        if (momentum) launch(3, [&] { sgd_velocity_f32(v.data(), g.data(), w.data(), n, mu, wd, decoupled); });
        launch(3, [&] { sgd_weight_f32(w.data(), g.data(), v.data(), n, lr, mu, wd, lr_wd, decoupled, momentum, nesterov); });
        save(argv[13], w);
        save(argv[14], v);
        return 0;
    }
    if (argc > 1 && !strcmp(argv[1], "bn") && argc == 15) {
        int n = atoi(argv[2]), c = atoi(argv[3]), hw = atoi(argv[4]), relu = atoi(argv[6]);
        float eps = atof(argv[5]);
        size_t nx = (size_t)n * c * hw;
        auto x = load(argv[7], nx), gamma = load(argv[8], c), beta = load(argv[9], c), gy = load(argv[10], nx);
        std::vector<float> y(nx), stats(2 * c), sums(2 * c), gx(nx);
        launch(c, [&] { bn_stats_f32(x.data(), stats.data(), n, c, hw); });
        launch(3, [&] { bn_apply_f32(x.data(), stats.data(), gamma.data(), beta.data(), y.data(), n, c, hw, eps, relu); });
        launch(c, [&] { bn_grad_sums_f32(x.data(), gy.data(), y.data(), stats.data(), sums.data(), n, c, hw, eps, relu); });
        launch(3, [&] { bn_grad_input_f32(x.data(), gy.data(), y.data(), stats.data(), gamma.data(), sums.data(), gx.data(), n, c, hw, eps, relu); });
        save(argv[11], y);
        save(argv[12], stats);
        save(argv[13], sums);
        save(argv[14], gx);
        return 0;
    }
    if (argc > 2 && !strcmp(argv[1], "sgdall") && argc == 3 + atoi(argv[2]) + 8 + 6) {
        int count = atoi(argv[2]);
        std::vector<long long> lens(count);
        size_t total = 0;
        for (int i = 0; i < count; ++i) total += lens[i] = atoll(argv[3 + i]);
        char** a = argv + 3 + count;
        float lr = atof(a[0]), mu = atof(a[1]), wd = atof(a[2]), lr_wd = atof(a[3]);
        int decoupled = atoi(a[4]), momentum = atoi(a[5]), nesterov = atoi(a[6]);
        double max_norm = atof(a[7]);
        auto w = load(a[8], total), g = load(a[9], total), v = load(a[10], total);
        std::vector<SgdEntry> entries;
        size_t at = 0;
        for (int i = 0; i < count; ++i) {
            entries.push_back({w.data() + at, g.data() + at, v.data() + at, lens[i]});
            at += lens[i];
        }
        std::vector<double> partial(count);
        std::vector<float> coef(1);
        launch(count, [&] { grad_sq_sums_f32(entries.data(), partial.data()); });
        launch(1, [&] { clip_coefficient_f32(partial.data(), count, max_norm, coef.data()); });
        launch2(2, count, [&] { sgd_all_f32(entries.data(), coef.data(), lr, mu, wd, lr_wd, decoupled, momentum, nesterov); });
        save(a[11], w);
        save(a[12], v);
        save(a[13], coef);
        return 0;
    }
    fprintf(stderr, "usage: see the comment at the top of harness.cpp\n");
    return 2;
}
