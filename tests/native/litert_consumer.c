/* A minimal app that runs a .tflite file through the LiteRT C API, as an
 * Android/iOS/embedded app would: one compiled model, one invoke per input,
 * no reset between calls, no Python.
 *
 *   litert_consumer MODEL.tflite IN_BYTES OUT_BYTES < inputs.bin > outputs.bin
 *
 * stdin holds the inputs back to back (IN_BYTES each, the model's input
 * tensor as stored); stdout gets OUT_BYTES of output per input.
 *
 * The ai-edge-litert wheel ships libLiteRt.so but not its headers, so the
 * handful of declarations used are written here after the headers in litert/c. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int LiteRtStatus; /* kLiteRtStatusOk == 0 */
typedef size_t LiteRtParamIndex;
typedef void *LiteRtEnvironment, *LiteRtModel, *LiteRtOptions, *LiteRtCompiledModel, *LiteRtSignature,
    *LiteRtTensor, *LiteRtTensorBuffer, *LiteRtTensorBufferRequirements;
/* LiteRtRankedTensorType is only read from the model and handed back: an
 * opaque, generously sized block is enough. */
typedef struct { _Alignas(16) unsigned char bytes[512]; } RankedTensorType;
enum { kLiteRtHwAcceleratorCpu = 1 };

LiteRtStatus LiteRtCreateEnvironment(int num_options, const void *options, LiteRtEnvironment *env);
LiteRtStatus LiteRtCreateModelFromFile(LiteRtEnvironment env, const char *filename, LiteRtModel *model);
LiteRtStatus LiteRtCreateOptions(LiteRtOptions *options);
LiteRtStatus LiteRtSetOptionsHardwareAccelerators(LiteRtOptions options, int accelerators);
LiteRtStatus LiteRtCreateCompiledModel(LiteRtEnvironment env, LiteRtModel model, LiteRtOptions options,
                                       LiteRtCompiledModel *compiled);
LiteRtStatus LiteRtGetModelSignature(LiteRtModel model, LiteRtParamIndex index, LiteRtSignature *signature);
LiteRtStatus LiteRtGetNumSignatureInputs(LiteRtSignature signature, LiteRtParamIndex *n);
LiteRtStatus LiteRtGetNumSignatureOutputs(LiteRtSignature signature, LiteRtParamIndex *n);
LiteRtStatus LiteRtGetSignatureInputTensorByIndex(LiteRtSignature signature, LiteRtParamIndex i, LiteRtTensor *t);
LiteRtStatus LiteRtGetSignatureOutputTensorByIndex(LiteRtSignature signature, LiteRtParamIndex i, LiteRtTensor *t);
LiteRtStatus LiteRtGetRankedTensorType(LiteRtTensor tensor, RankedTensorType *type);
LiteRtStatus LiteRtGetCompiledModelInputBufferRequirements(LiteRtCompiledModel compiled, LiteRtParamIndex signature,
                                                           LiteRtParamIndex i, LiteRtTensorBufferRequirements *r);
LiteRtStatus LiteRtGetCompiledModelOutputBufferRequirements(LiteRtCompiledModel compiled, LiteRtParamIndex signature,
                                                            LiteRtParamIndex i, LiteRtTensorBufferRequirements *r);
LiteRtStatus LiteRtGetTensorBufferRequirementsBufferSize(LiteRtTensorBufferRequirements r, size_t *size);
LiteRtStatus LiteRtCreateTensorBufferFromHostMemory(const RankedTensorType *type, void *host, size_t size,
                                                    void (*deallocator)(void *), LiteRtTensorBuffer *buffer);
LiteRtStatus LiteRtRunCompiledModel(LiteRtCompiledModel compiled, LiteRtParamIndex signature, size_t n_in,
                                    LiteRtTensorBuffer *in, size_t n_out, LiteRtTensorBuffer *out);


#define CHECK(call)                                                                              \
    do {                                                                                         \
        LiteRtStatus s_ = (call);                                                                \
        if (s_ != 0) {                                                                           \
            fprintf(stderr, "%s failed: LiteRtStatus %d\n", #call, s_);       \
            return 3;                                                                            \
        }                                                                                        \
    } while (0)

static void *host_buffer(size_t bytes) { /* LiteRT wants 64-byte aligned host memory */
    size_t padded = (bytes + 63) / 64 * 64;
    void *p = aligned_alloc(64, padded ? padded : 64);
    if (p) memset(p, 0, padded ? padded : 64);
    return p;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL.tflite IN_BYTES OUT_BYTES < inputs > outputs\n", argv[0]);
        return 2;
    }
    size_t in_bytes = strtoul(argv[2], NULL, 10), out_bytes = strtoul(argv[3], NULL, 10);
    LiteRtEnvironment env;
    LiteRtModel model;
    LiteRtOptions options;
    LiteRtCompiledModel compiled;
    LiteRtSignature signature;
    CHECK(LiteRtCreateEnvironment(0, NULL, &env));
    CHECK(LiteRtCreateModelFromFile(env, argv[1], &model));
    CHECK(LiteRtCreateOptions(&options));
    CHECK(LiteRtSetOptionsHardwareAccelerators(options, kLiteRtHwAcceleratorCpu));
    CHECK(LiteRtCreateCompiledModel(env, model, options, &compiled));
    CHECK(LiteRtGetModelSignature(model, 0, &signature));
    LiteRtParamIndex n_in, n_out;
    CHECK(LiteRtGetNumSignatureInputs(signature, &n_in));
    CHECK(LiteRtGetNumSignatureOutputs(signature, &n_out));
    if (n_in != 1 || n_out != 1) {
        fprintf(stderr, "expected one input and one output, the model has %zu and %zu\n", n_in, n_out);
        return 2;
    }
    LiteRtTensor in_tensor, out_tensor;
    RankedTensorType in_type, out_type;
    LiteRtTensorBufferRequirements in_req, out_req;
    size_t in_size, out_size;
    CHECK(LiteRtGetSignatureInputTensorByIndex(signature, 0, &in_tensor));
    CHECK(LiteRtGetSignatureOutputTensorByIndex(signature, 0, &out_tensor));
    CHECK(LiteRtGetRankedTensorType(in_tensor, &in_type));
    CHECK(LiteRtGetRankedTensorType(out_tensor, &out_type));
    CHECK(LiteRtGetCompiledModelInputBufferRequirements(compiled, 0, 0, &in_req));
    CHECK(LiteRtGetCompiledModelOutputBufferRequirements(compiled, 0, 0, &out_req));
    CHECK(LiteRtGetTensorBufferRequirementsBufferSize(in_req, &in_size));
    CHECK(LiteRtGetTensorBufferRequirementsBufferSize(out_req, &out_size));
    if (in_size < in_bytes || out_size < out_bytes) {
        fprintf(stderr, "the model's buffers hold %zu and %zu bytes, %zu and %zu were asked for\n", in_size, out_size,
                in_bytes, out_bytes);
        return 2;
    }
    void *in_host = host_buffer(in_size), *out_host = host_buffer(out_size);
    LiteRtTensorBuffer in_buffer, out_buffer;
    CHECK(LiteRtCreateTensorBufferFromHostMemory(&in_type, in_host, in_size, NULL, &in_buffer));
    CHECK(LiteRtCreateTensorBufferFromHostMemory(&out_type, out_host, out_size, NULL, &out_buffer));
    long runs = 0;
    while (fread(in_host, 1, in_bytes, stdin) == in_bytes) {
        CHECK(LiteRtRunCompiledModel(compiled, 0, 1, &in_buffer, 1, &out_buffer));
        fwrite(out_host, 1, out_bytes, stdout);
        runs++;
    }
    fprintf(stderr, "%ld runs\n", runs);
    return 0;
}
