/**
 * Correctness parts of bench.ts, on whatever device Dawn found (NVIDIA, where these were never checked before):
 *
 * `packed`: the tiled matmul with a packed W (f16, int8, NF4, and int8/NF4 with double-quantized scales) through
 *   the ops that use it, `linear` (y, dx) and `loraLinear` (y, dx, dA, dB, dropout on), against float64 CPU
 *   references of the decoded weights (`decodeMatrix`), as test/unit/kernels/quant.test.ts checks them on
 *   lavapipe: both weight layouts, the tests' shapes plus a GPT-2 c_attn-sized one, every base kernel variant
 *   forced in turn. Pass: every relative error (self_test.ts's `relativeError`) ≤ 1e-4, the tests' tolerance.
 *
 * `adamw`: the AdamW kernels against the CPU reference `adamwReference` (kernels/adamw/reference.ts):
 *   - the fused tfjs kernel (`adamwUpdate`, the tape path's optimizer) over 5 steps on the test's odd sizes and
 *     gradient scales, weight decay 0 and 0.1: p', m', v' within 1e-6 (adamw.test.ts's tolerance);
 *   - the engine's multi-tensor step (`gradNormPartialsCall` + `adamwStepCall`, what the compiled Trainer runs)
 *     over flat buffers in two parameter groups, 5 steps with clipping active, inactive and off, with workgroup
 *     and (where the device has `subgroups`) subgroup reductions: p, m, v against `adamwReference` of the
 *     gradients scaled by the clip coefficient, and the norm against float64; within 1e-5 (adamw_program.test.ts).
 */
import * as tf from "@tensorflow/tfjs";
import {
  decodeMatrix,
  encodeMatrix,
  gpuDevice,
  linear,
  loraLinear,
  setLoraKernelVariant,
  setReductionKind,
  uploadPacked,
  type PackedFormat,
  type PackedHost,
  type VariantName,
} from "@webtune/core";
import { Engine } from "../../packages/core/src/engine/engine.js";
import {
  graphLimits,
  StepGraph,
} from "../../packages/core/src/engine/graph.js";
import { adamwUpdate } from "../../packages/core/src/kernels/adamw/op.js";
import {
  adamwReference,
  type AdamWTensors,
} from "../../packages/core/src/kernels/adamw/reference.js";
import type { AdamWScalars } from "../../packages/core/src/kernels/adamw/attrs.js";
import {
  adamwStepCall,
  flatLayout,
  gradNormPartialsCall,
  gradNormWorkgroups,
} from "../../packages/core/src/kernels/adamw/program.js";
import { linearReference } from "../../packages/core/src/kernels/linear/reference.js";
import {
  loraForwardReference,
  loraGradAReference,
  loraGradBReference,
  loraGradXReference,
  projectGradReference,
} from "../../packages/core/src/kernels/lora_linear/reference.js";
import {
  relativeError,
  seededValues,
} from "../../packages/core/src/kernels/lora_linear/self_test.js";
import { BASE_VARIANTS } from "../../packages/core/src/kernels/lora_linear/variant.js";
import { envInt, exp2, type PartContext } from "./part.js";

/* ------------------------------------------------------------------------------------------------------------
 * packed
 * ------------------------------------------------------------------------------------------------------------ */

const PACKED_RTOL = 1e-4;

const FORMATS: { format: PackedFormat; doubleQuant: boolean }[] = [
  { format: "float16", doubleQuant: false },
  { format: "int8", doubleQuant: false },
  { format: "nf4", doubleQuant: false },
  { format: "int8", doubleQuant: true },
  { format: "nf4", doubleQuant: true },
];
const formatName = (f: (typeof FORMATS)[number]) =>
  `${f.format}${f.doubleQuant ? "+double" : ""}`;

type Layout = "in_out" | "out_in";
type Outputs = Record<string, Float32Array>;

/** One case: seeded data, its packed host W, and the references from the decoded W (computed once). */
function packedCase(
  f: (typeof FORMATS)[number],
  layout: Layout,
  [T, IN, OUT, R]: [number, number, number, number],
) {
  const wShape: [number, number] = layout === "in_out" ? [IN, OUT] : [OUT, IN];
  const w = seededValues(IN * OUT, 41).map((v, i) => v * (1 + (i % 13) / 4)); // blocks of different absmax
  const host = encodeMatrix(w, wShape, f.format, {
    doubleQuant: f.doubleQuant,
  });
  const Wd = decodeMatrix(host);
  const d = {
    x: seededValues(T * IN, 42),
    bias: seededValues(OUT, 43),
    A: seededValues(R * IN, 44),
    B: seededValues(OUT * R, 45),
    cot: seededValues(T * OUT, 46),
  };
  const attrs = { scale: 1.5, weightLayout: layout, dropout: 0.2, seed: 5 };
  const wl = layout === "in_out" ? "kn" : "nk";
  const dims = { T, IN, OUT, R };
  const g = projectGradReference(d.cot, d.B, dims);
  const ref: Outputs = {
    "linear y": linearReference(d.x, Wd, d.bias, dims, wl),
    "linear dx": linearReference(
      d.cot,
      Wd,
      undefined,
      { T, IN: OUT, OUT: IN },
      wl === "kn" ? "nk" : "kn",
    ),
    "lora y": loraForwardReference(d.x, Wd, d.bias, d.A, d.B, dims, attrs),
    "lora dx": loraGradXReference(d.cot, Wd, g, d.A, dims, attrs),
    "lora dA": loraGradAReference(g, d.x, dims, attrs),
    "lora dB": loraGradBReference(d.cot, d.x, d.A, dims, attrs),
  };
  return { host, d, dims, attrs, layout, ref };
}

/** linear's y, dx and loraLinear's y, dx, dA, dB with the packed W on the current backend and variant. */
async function packedOnDevice(
  c: ReturnType<typeof packedCase>,
  host: PackedHost,
): Promise<Outputs> {
  const { T, IN, OUT, R } = c.dims;
  const W = uploadPacked(host);
  const t = {
    x: tf.tensor2d(c.d.x, [T, IN]),
    b: tf.tensor1d(c.d.bias),
    A: tf.tensor2d(c.d.A, [R, IN]),
    B: tf.tensor2d(c.d.B, [OUT, R]),
    dy: tf.tensor2d(c.d.cot, [T, OUT]),
  };
  const made: tf.Tensor[] = [];
  try {
    const lin = tf.valueAndGrads((x: tf.Tensor) => linear(x, W, t.b, c.layout))(
      [t.x],
      t.dy,
    );
    made.push(lin.value, ...lin.grads);
    const lora = tf.valueAndGrads((x: tf.Tensor, A: tf.Tensor, B: tf.Tensor) =>
      loraLinear(x, W, t.b, A as tf.Tensor2D, B as tf.Tensor2D, c.attrs),
    )([t.x, t.A, t.B], t.dy);
    made.push(lora.value, ...lora.grads);
    const v = (await Promise.all(made.map((m) => m.data()))) as Float32Array[];
    return {
      "linear y": v[0]!,
      "linear dx": v[1]!,
      "lora y": v[2]!,
      "lora dx": v[3]!,
      "lora dA": v[4]!,
      "lora dB": v[5]!,
    };
  } finally {
    tf.dispose([...made, ...Object.values(t)]);
    W.dispose();
  }
}

export async function packedPart(ctx: PartContext): Promise<void> {
  const { log, smoke } = ctx;
  // [T, IN, OUT, R]: the quant test's shapes (vec4 loaders both ways, odd everywhere, mixed; partial blocks and
  // scale groups), plus GPT-2's c_attn at 32 tokens. Smoke: one shape, one layout, one variant (lavapipe
  // compiles each variant × format × layout's pipelines in seconds).
  const shapes: [number, number, number, number][] = smoke
    ? [[7, 67, 37, 3]]
    : [
        [9, 132, 140, 4],
        [7, 67, 37, 3],
        [5, 64, 30, 2],
        [32, 768, 2304, 8],
      ];
  const layouts: Layout[] = smoke ? ["in_out"] : ["in_out", "out_in"];
  // Smoke: f16 and the longest quantized path (NF4 with double-quantized scales).
  const checked = smoke ? [FORMATS[0]!, FORMATS[4]!] : FORMATS;
  // The hardware default first, so that it is checked whatever the budget leaves out.
  const variants: VariantName[] = (process.env["BENCH_PACKED_VARIANTS"]?.split(
    ",",
  ) ??
    (smoke
      ? ["direct"]
      : [
          "shared",
          ...BASE_VARIANTS.filter((v) => v !== "shared"),
        ])) as VariantName[];
  const budgetMs = 1000 * envInt("BENCH_PACKED_BUDGET_S", smoke ? 60 : 35);
  const out: Record<string, unknown> = {
    tolerance: PACKED_RTOL,
    variants,
    layouts,
    shapes: shapes.map((s) => s.join("x")),
  };
  ctx.result["packed"] = out;
  const formats: Record<
    string,
    {
      worst: Record<string, number>;
      byVariant: Record<string, number>;
      max: number;
      where: string;
      cases: number;
    }
  > = {};
  for (const f of checked)
    formats[formatName(f)] = {
      worst: {},
      byVariant: {},
      max: 0,
      where: "",
      cases: 0,
    };
  const refs = new Map<string, ReturnType<typeof packedCase>>();
  const total =
    variants.length * checked.length * layouts.length * shapes.length;
  let done = 0;
  const start = performance.now();
  try {
    all: for (const variant of variants) {
      setLoraKernelVariant(variant);
      for (const f of checked)
        for (const layout of layouts)
          for (const shape of shapes) {
            if (performance.now() - start > budgetMs) break all;
            const key = `${formatName(f)} ${layout} ${shape.join("x")}`;
            let c = refs.get(key);
            if (!c) refs.set(key, (c = packedCase(f, layout, shape)));
            const got = await packedOnDevice(c, c.host);
            const acc = formats[formatName(f)]!;
            acc.cases++;
            done++;
            for (const [k, ref] of Object.entries(c.ref)) {
              const e = relativeError(got[k]!, ref).error;
              const before = acc.max;
              acc.max = maxError(acc.max, e);
              if (acc.max !== before || acc.where === "")
                acc.where = `${variant} ${layout} ${shape.join("x")} ${k}`;
              worse(acc.worst, { [k]: e });
              worse(acc.byVariant, { [variant]: e });
            }
          }
      log(
        `  ${variant}: ${done} of ${total} cases checked (${((performance.now() - start) / 1000).toFixed(1)} s)`,
      );
    }
  } finally {
    setLoraKernelVariant(undefined);
  }
  let pass = true;
  const results: Record<string, unknown> = {};
  for (const [name, acc] of Object.entries(formats)) {
    const ok = acc.cases > 0 && acc.max <= PACKED_RTOL;
    pass &&= ok;
    const fmt = (m: Record<string, number>) =>
      Object.fromEntries(
        Object.entries(m).map(([k, v]) => [k, Number(exp2(v))]),
      );
    results[name] = {
      pass: ok,
      max_relative_error: Number(exp2(acc.max)),
      by_output: fmt(acc.worst),
      by_variant: fmt(acc.byVariant),
      worst_at: acc.where,
      cases: acc.cases,
    };
    log(
      `${name.padEnd(12)} ${ok ? "PASS" : "FAIL"} max relative error ${exp2(acc.max)} over ${acc.cases} cases ` +
        `(worst at ${acc.where}); ` +
        Object.entries(acc.worst)
          .map(([k, v]) => `${k} ${exp2(v)}`)
          .join(", "),
    );
  }
  out["formats"] = results;
  out["cases_checked"] = done;
  out["cases_total"] = total;
  out["pass"] = pass;
  log(
    `packed: ${pass ? "PASS" : "FAIL"} (tolerance ${PACKED_RTOL}; ${done} of ${total} cases` +
      `${done < total ? `, the ${budgetMs / 1000} s budget (BENCH_PACKED_BUDGET_S) left the rest out` : ""})`,
  );
  if (!pass) throw new Error("a packed matmul is outside the tolerance");
}

/* ------------------------------------------------------------------------------------------------------------
 * adamw
 * ------------------------------------------------------------------------------------------------------------ */

const FUSED_RTOL = 1e-6;
const ENGINE_RTOL = 1e-5;
const STEPS = 5;
const [BETA1, BETA2] = [0.9, 0.999];

/** The worse of two errors; NaN is the worst. */
function maxError(a: number, b: number): number {
  return Number.isNaN(a) || Number.isNaN(b) ? NaN : Math.max(a, b);
}

/** The worst of a record's errors (0 for none). */
function worstOf(e: Record<string, number>): number {
  return Object.values(e).reduce(maxError, 0);
}

/** Worst relative error of p', m', v' against the reference. */
function stateError(got: AdamWTensors, want: AdamWTensors) {
  return {
    p: relativeError(got.param, want.param).error,
    m: relativeError(got.expAvg, want.expAvg).error,
    v: relativeError(got.expAvgSq, want.expAvgSq).error,
  };
}

/** Keeps each key's worst error in `acc`: the larger, and NaN (a broken kernel) once seen stays. */
function worse(acc: Record<string, number>, e: Record<string, number>) {
  for (const [k, v] of Object.entries(e)) {
    const old = acc[k];
    if (old === undefined || Number.isNaN(v) || (!Number.isNaN(old) && v > old))
      acc[k] = v;
  }
}

/** The fused tfjs kernel, one variable at a time, as adamw.test.ts drives it. */
async function fusedAdamw(smoke: boolean): Promise<Record<string, number>> {
  const shapes = smoke
    ? [[7], [1025], [33, 31]]
    : [[1], [7], [1025], [33, 31], [2, 150001]];
  const gradScale = [1, 1e-5, 0.3, 10, 1];
  const worst: Record<string, number> = {};
  for (const weightDecay of [0, 0.1])
    for (let i = 0; i < shapes.length; i++) {
      const shape = shapes[i]!;
      const n = tf.util.sizeFromShape(shape);
      let ref: AdamWTensors = {
        param: seededValues(n, 50 + i),
        expAvg: new Float32Array(n),
        expAvgSq: new Float32Array(n),
      };
      let gpu = [tf.tensor(ref.param, shape), tf.zeros(shape), tf.zeros(shape)];
      for (let t = 1; t <= STEPS; t++) {
        const lr = 0.01 / t;
        const s: AdamWScalars = {
          beta1: BETA1,
          beta2: BETA2,
          eps: 1e-6,
          stepSize: lr / (1 - BETA1 ** t),
          bias2Sqrt: Math.sqrt(1 - BETA2 ** t),
          decay: 1 - lr * weightDecay,
        };
        const g = seededValues(n, 100 * t + i).map((x) => x * gradScale[i]!);
        const grad = tf.tensor(g, shape);
        const next = adamwUpdate(gpu[0]!, grad, gpu[1]!, gpu[2]!, s);
        tf.dispose([...gpu, grad]);
        gpu = next;
        ref = adamwReference(ref, g, s);
        const [param, expAvg, expAvgSq] = (await Promise.all(
          gpu.map((x) => x.data()),
        )) as Float32Array[];
        worse(
          worst,
          stateError(
            { param: param!, expAvg: expAvg!, expAvgSq: expAvgSq! },
            ref,
          ),
        );
      }
      tf.dispose(gpu);
    }
  return worst;
}

/**
 * The engine's clip + AdamW over flat buffers that persist across runs (the training state's layout), as
 * adamw_program.test.ts builds it: tensors in two groups, the gradient norm's partial sums, then the update.
 */
async function engineAdamw(
  sizes: number[],
  groups: number[],
): Promise<Record<string, number>> {
  const device = gpuDevice();
  const EPS = 1e-8;
  const GROUPS = [
    { lrScale: 1, weightDecay: 0.1 },
    { lrScale: 4, weightDecay: 0 },
  ];
  const layout = flatLayout(sizes, groups);
  const { P, offsets, groupOf } = layout;
  const pack = (ts: ArrayLike<number>[]) => {
    const flat = new Float32Array(P);
    ts.forEach((t, i) => flat.set(t, offsets[i]!));
    return flat;
  };
  let ref: AdamWTensors[] = sizes.map((n, i) => ({
    param: seededValues(n, 50 + i),
    expAvg: new Float32Array(n),
    expAvgSq: new Float32Array(n),
  }));
  const buffers = [pack(ref.map((r) => r.param)), null, null].map((values) => {
    const b = device.createBuffer({
      size: P * 4,
      usage:
        GPUBufferUsage.STORAGE |
        GPUBufferUsage.COPY_SRC |
        GPUBufferUsage.COPY_DST,
    });
    device.queue.writeBuffer(b, 0, values ?? new Float32Array(P));
    return b;
  });
  const g = new StepGraph(graphLimits(device));
  const [p, m, v] = ["params", "m", "v"].map((name, i) =>
    g.external(name, [P], () => buffers[i]!),
  );
  const gradInput = g.input("grads", [P], "f32");
  const table = g.constant("groupOf", [groupOf.length], groupOf);
  const W = gradNormWorkgroups(P);
  const partials = g.activation("partials", [W]);
  const norm = g.activation("norm", [1]);
  g.dispatch("grad norm", gradNormPartialsCall(P), [partials, gradInput]);
  g.dispatch(
    "adamw",
    adamwStepCall(P, W, { beta1: BETA1, beta2: BETA2, eps: EPS }),
    [p!, m!, v!, norm, gradInput, table, partials],
  );
  g.readback(norm);
  const engine = new Engine(device);
  const worst: Record<string, number> = {};
  try {
    const compiled = engine.compile(g);
    const clipRatio = [0.1, 0, 3, 0.5, 0]; // clip, off, inactive, clip, off
    for (let t = 1; t <= STEPS; t++) {
      const lr = 0.01 / t;
      const adam = GROUPS.map(({ lrScale, weightDecay }) => ({
        stepSize: (lr * lrScale) / (1 - BETA1 ** t),
        bias2Sqrt: Math.sqrt(1 - BETA2 ** t),
        decay: 1 - lr * lrScale * weightDecay,
      }));
      const grads = sizes.map((n, i) =>
        seededValues(n, 100 * t + i).map((x) => x * [0.1, 1, 3][i % 3]!),
      );
      let sq = 0;
      for (const gr of grads) for (const x of gr) sq += x * x;
      const want = Math.sqrt(sq);
      const maxGradNorm = clipRatio[t - 1]! * want;
      const [got] = await engine.run({
        graphs: [compiled],
        inputs: [[compiled, gradInput, pack(grads)]],
        params: {
          dropoutSeed: 0,
          accumulate: false,
          lossScale: 1,
          maxGradNorm,
          adam,
        },
        readback: [[compiled, norm]],
      });
      worse(worst, { norm: Math.abs(got![0]! - want) / want });
      const coef =
        maxGradNorm > 0 ? Math.min(maxGradNorm / (want + 1e-6), 1) : 1;
      ref = ref.map((r, i) => {
        const a = adam[groups[i]!]!;
        return adamwReference(
          r,
          grads[i]!.map((x) => x * coef),
          { beta1: BETA1, beta2: BETA2, eps: EPS, ...a },
        );
      });
      const flat = await readFlat(device, buffers, P);
      ref.forEach((r, i) => {
        const at = (f: Float32Array) =>
          f.subarray(offsets[i]!, offsets[i]! + sizes[i]!);
        worse(
          worst,
          stateError(
            {
              param: at(flat[0]!),
              expAvg: at(flat[1]!),
              expAvgSq: at(flat[2]!),
            },
            r,
          ),
        );
      });
    }
  } finally {
    engine.dispose();
    for (const b of buffers) b.destroy();
  }
  return worst;
}

async function readFlat(
  device: GPUDevice,
  buffers: GPUBuffer[],
  P: number,
): Promise<Float32Array[]> {
  const bytes = P * 4;
  const staging = device.createBuffer({
    size: buffers.length * bytes,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  const encoder = device.createCommandEncoder();
  buffers.forEach((b, i) =>
    encoder.copyBufferToBuffer(b, 0, staging, i * bytes, bytes),
  );
  device.queue.submit([encoder.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  const all = new Float32Array(staging.getMappedRange().slice(0));
  staging.destroy();
  return buffers.map((_, i) => all.subarray(i * P, (i + 1) * P));
}

export async function adamwPart(ctx: PartContext): Promise<void> {
  const { log, smoke } = ctx;
  const out: Record<string, unknown> = {};
  ctx.result["adamw"] = out;
  const fmt = (e: Record<string, number>) =>
    Object.entries(e)
      .map(([k, v]) => `${k} ${exp2(v)}`)
      .join(", ");
  const fused = await fusedAdamw(smoke);
  const fusedMax = worstOf(fused);
  out["fused"] = {
    tolerance: FUSED_RTOL,
    pass: fusedMax <= FUSED_RTOL,
    max_relative_error: Number(exp2(fusedMax)),
    by_output: Object.fromEntries(
      Object.entries(fused).map(([k, v]) => [k, Number(exp2(v))]),
    ),
  };
  log(
    `fused tfjs kernel (adamwUpdate), ${STEPS} steps: ${fusedMax <= FUSED_RTOL ? "PASS" : "FAIL"} ` +
      `max relative error ${exp2(fusedMax)} (tolerance ${FUSED_RTOL}): ${fmt(fused)}`,
  );
  const kinds = gpuDevice().features.has("subgroups")
    ? (["workgroup", "subgroup"] as const)
    : (["workgroup"] as const);
  const cases: [string, number[], number[]][] = [
    ["small", [300, 1030, 7], [0, 1, 0]],
    ["large", smoke ? [70_001, 1030, 7] : [300_001, 1030, 7], [1, 0, 1]],
  ];
  let pass = fusedMax <= FUSED_RTOL;
  const engine: Record<string, unknown> = {};
  out["engine"] = engine;
  try {
    for (const kind of kinds) {
      setReductionKind(kind);
      const worst: Record<string, number> = {};
      for (const [, sizes, groups] of cases)
        worse(worst, await engineAdamw(sizes, groups));
      const max = worstOf(worst);
      const ok = max <= ENGINE_RTOL;
      pass &&= ok;
      engine[kind] = {
        tolerance: ENGINE_RTOL,
        pass: ok,
        max_relative_error: Number(exp2(max)),
        by_output: Object.fromEntries(
          Object.entries(worst).map(([k, v]) => [k, Number(exp2(v))]),
        ),
      };
      log(
        `engine clip+AdamW, ${kind} reductions, ${STEPS} steps: ${ok ? "PASS" : "FAIL"} max relative error ` +
          `${exp2(max)} (tolerance ${ENGINE_RTOL}): ${fmt(worst)}`,
      );
    }
  } finally {
    setReductionKind(undefined);
  }
  if (kinds.length === 1)
    log("engine clip+AdamW: no subgroups on this device, workgroup only");
  out["pass"] = pass;
  if (!pass) throw new Error("an AdamW kernel is outside the tolerance");
}
