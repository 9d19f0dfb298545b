/**
 * WebGPU kernels for the LoRA linear op: the program class, and the kernel functions that compose the forward
 * pass and each gradient from `matmulShader` configurations.
 */
import { webgpu_util } from "@tensorflow/tfjs-backend-webgpu";
import {
  disposeIntermediate,
  runProgram,
  webgpuBackendOf,
  type ProgramUniform,
  type TensorInfo,
  type WebGPUProgram,
} from "../../backend/programs.js";
import type { WebGPUBackend } from "@tensorflow/tfjs-backend-webgpu";
import { isSoftwareGpu } from "../../runtime/runtime.js";
import { dropoutUniforms, keepScale } from "./dropout.js";
import {
  F32_W,
  matmulShader,
  shaderKey,
  UNIFORMS_WGSL,
  type MatmulLayout,
  type TileConfig,
} from "./shader.wgsl.js";
import { scaleBindingNames } from "../quant/shader.wgsl.js";
import {
  readWeightAttrs,
  scaleInputs,
  type WeightAttrs,
} from "../quant/inputs.js";
import { chooseTile, type ProblemShape } from "./variant.js";
import {
  dimsOf,
  KERNELS,
  readAttrs,
  type LoraDims,
  type LoraKernelAttrs,
} from "./attrs.js";
import {
  registerKernel,
  type KernelConfig,
  type NamedTensorInfoMap,
} from "@tensorflow/tfjs";

/** tfjs's view of one configured matmul: out[M, N], inputs X, W and optionally H, U, bias, then W's scales. */
class LoraMatmulProgram implements WebGPUProgram {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = { x: [1], y: [0] };
  dispatch: [number, number, number];
  variableNames: string[];
  variableComponents: number[];
  workgroupSize: [number, number, number];
  uniforms = UNIFORMS_WGSL;

  constructor(
    shape: ProblemShape,
    private readonly layout: MatmulLayout,
    private readonly tile: TileConfig,
  ) {
    this.outputShape = [shape.M, shape.N];
    this.variableNames = ["X", "W"];
    if (layout.lowRank !== "none") this.variableNames.push("H", "U");
    if (layout.bias) this.variableNames.push("bias");
    this.variableNames.push(
      ...scaleBindingNames("W", layout.wFormat, layout.doubleQuant),
    );
    // A packed W is int32 words read one at a time: only an f32 W binds as vec4.
    const vec4W = tile.vec4W && layout.wFormat === "float32";
    this.variableComponents = this.variableNames.map((name) =>
      (name === "X" && tile.vec4X) || (name === "W" && vec4W) ? 4 : 1,
    );
    this.workgroupSize = [tile.workgroup[0], tile.workgroup[1], 1];
    this.dispatch = webgpu_util.computeDispatch(
      this.dispatchLayout,
      this.outputShape,
      this.workgroupSize,
      [tile.thread, tile.thread, 1],
    );
    this.shaderKey = shaderKey(layout, tile);
  }

  getUserCode(): string {
    return matmulShader(this.layout, this.tile);
  }
}

interface MatmulCall {
  shape: ProblemShape & { R?: number };
  layout: MatmulLayout;
  /** X, W[, H, U][, bias]: the order of the program's bindings. */
  inputs: TensorInfo[];
  /** A packed W's scale tensors (bound last) and double-quant offset. */
  wScales?: TensorInfo[];
  wOffset?: number;
  outScale?: number;
  loraScale?: number;
  dropout?: { p: number; seed: number };
}

/** Runs one configured matmul and returns its [M, N] output. */
export function runLoraMatmul(
  backend: WebGPUBackend,
  call: MatmulCall,
): TensorInfo {
  const { shape, layout } = call;
  // tfjs runs one program per kernel: a split-K choice runs here as its variant without the split.
  const tile = chooseTile(shape, layout, {
    software: isSoftwareGpu(),
    splitK: false,
  });
  const program = new LoraMatmulProgram(shape, layout, tile);
  const mask = dropoutUniforms(call.dropout?.p ?? 0, call.dropout?.seed ?? 0);
  const uniforms: ProgramUniform[] = [
    { type: "int32", data: [shape.M] },
    { type: "int32", data: [shape.N] },
    { type: "int32", data: [shape.K] },
    { type: "int32", data: [shape.R ?? 0] },
    { type: "float32", data: [call.outScale ?? 1] },
    { type: "float32", data: [call.loraScale ?? 0] },
    { type: "uint32", data: [mask.seedHash] },
    { type: "uint32", data: [mask.threshold] },
    { type: "float32", data: [call.wOffset ?? 0] },
  ];
  const inputs = [...call.inputs, ...(call.wScales ?? [])];
  return runProgram(backend, program, inputs, uniforms);
}

const NO_EPILOGUE = {
  lowRank: "none",
  lowRankMask: false,
  bias: false,
  ...F32_W,
} as const;

/** A frozen weight as the matmuls bind it: the words (or f32 values), then how they are stored. */
export interface WeightInput {
  W: TensorInfo;
  attrs: WeightAttrs;
  /** The scale tensors a packed W binds, in binding order (see `scaleInputs`). */
  scales: TensorInfo[];
}

/** The layout fields and call fields that bind W as stored. */
function weightCall(w: WeightInput) {
  return {
    layout: { wFormat: w.attrs.wFormat, doubleQuant: w.attrs.doubleQuant },
    call: { wScales: w.scales, wOffset: w.attrs.wOffset },
  };
}

/** The weight a kernel received: W, its packed parts (if any) and the attrs that say how it is stored. */
export function weightInput(
  inputs: NamedTensorInfoMap,
  attrs: Record<string, unknown>,
): WeightInput {
  const a = readWeightAttrs(attrs);
  return { W: inputs["W"]!, attrs: a, scales: scaleInputs(inputs, a) };
}

/** h[T, R] = keep · drop(x)·Aᵀ. */
export function projectDown(
  backend: WebGPUBackend,
  x: TensorInfo,
  A: TensorInfo,
  d: LoraDims,
  a: LoraKernelAttrs,
) {
  return runLoraMatmul(backend, {
    shape: { M: d.T, N: d.R, K: d.IN },
    layout: {
      xLayout: "mk",
      wLayout: "nk",
      dropout: a.dropout > 0 ? "x" : "none",
      ...NO_EPILOGUE,
    },
    inputs: [x, A],
    outScale: keepScale(a.dropout),
    dropout: { p: a.dropout, seed: a.seed },
  });
}

/** y[T, OUT] = x·W + b + s · h·Bᵀ, the low-rank term added in the matmul's epilogue. */
export function loraForward(
  backend: WebGPUBackend,
  inputs: {
    x: TensorInfo;
    W: WeightInput;
    A: TensorInfo;
    B: TensorInfo;
    bias?: TensorInfo;
  },
  a: LoraKernelAttrs,
): TensorInfo {
  const { x, A, B, bias } = inputs;
  const W = weightCall(inputs.W);
  const d = dimsOf({ x, A, B });
  const h = projectDown(backend, x, A, d, a);
  try {
    return runLoraMatmul(backend, {
      shape: { M: d.T, N: d.OUT, K: d.IN, R: d.R },
      layout: {
        xLayout: "mk",
        wLayout: a.weightLayout === "in_out" ? "kn" : "nk",
        dropout: "none",
        lowRank: "nr",
        lowRankMask: false,
        bias: bias !== undefined,
        ...W.layout,
      },
      inputs: bias ? [x, inputs.W.W, h, B, bias] : [x, inputs.W.W, h, B],
      loraScale: a.scale,
      ...W.call,
    });
  } finally {
    disposeIntermediate(backend, h);
  }
}

/** g[T, R] = dy·B. */
export function projectGrad(
  backend: WebGPUBackend,
  dy: TensorInfo,
  B: TensorInfo,
  d: LoraDims,
): TensorInfo {
  return runLoraMatmul(backend, {
    shape: { M: d.T, N: d.R, K: d.OUT },
    layout: { xLayout: "mk", wLayout: "kn", dropout: "none", ...NO_EPILOGUE },
    inputs: [dy, B],
  });
}

/** dx[T, IN] = dy·Wᵀ + s·keep · mask ∘ (g·A). */
export function loraGradX(
  backend: WebGPUBackend,
  inputs: { dy: TensorInfo; W: WeightInput; g: TensorInfo; A: TensorInfo },
  d: LoraDims,
  a: LoraKernelAttrs,
): TensorInfo {
  const W = weightCall(inputs.W);
  return runLoraMatmul(backend, {
    shape: { M: d.T, N: d.IN, K: d.OUT, R: d.R },
    layout: {
      xLayout: "mk",
      // x·W read W as [IN, OUT] = [K, N] for 'in_out'; dy·Wᵀ reads the same buffer as [N, K].
      wLayout: a.weightLayout === "in_out" ? "nk" : "kn",
      dropout: "none",
      lowRank: "rn",
      lowRankMask: a.dropout > 0,
      bias: false,
      ...W.layout,
    },
    inputs: [inputs.dy, inputs.W.W, inputs.g, inputs.A],
    loraScale: a.scale * keepScale(a.dropout),
    dropout: { p: a.dropout, seed: a.seed },
    ...W.call,
  });
}

/** dA[R, IN] = s·keep · gᵀ·drop(x). */
export function loraGradA(
  backend: WebGPUBackend,
  g: TensorInfo,
  x: TensorInfo,
  d: LoraDims,
  a: LoraKernelAttrs,
) {
  return runLoraMatmul(backend, {
    shape: { M: d.R, N: d.IN, K: d.T },
    layout: {
      xLayout: "km",
      wLayout: "kn",
      dropout: a.dropout > 0 ? "w" : "none",
      ...NO_EPILOGUE,
    },
    inputs: [g, x],
    outScale: a.scale * keepScale(a.dropout),
    dropout: { p: a.dropout, seed: a.seed },
  });
}

/** dB[OUT, R] = s · dyᵀ·h. */
export function loraGradB(
  backend: WebGPUBackend,
  dy: TensorInfo,
  h: TensorInfo,
  d: LoraDims,
  a: LoraKernelAttrs,
) {
  return runLoraMatmul(backend, {
    shape: { M: d.OUT, N: d.R, K: d.T },
    layout: { xLayout: "km", wLayout: "kn", dropout: "none", ...NO_EPILOGUE },
    inputs: [dy, h],
    outScale: a.scale,
  });
}

/** Registers the WGSL kernels with tfjs for the 'webgpu' backend. */
export function registerWebGPUKernels(): void {
  // The f32 and packed forward kernels differ only in the inputs tfjs saves for the gradient.
  const forward: KernelConfig["kernelFunc"] = ({ inputs, backend, attrs }) => {
    const { x, A, B, bias } = inputs as NamedTensorInfoMap;
    const W = weightInput(inputs as NamedTensorInfoMap, attrs!);
    return loraForward(
      webgpuBackendOf(backend),
      { x: x!, W, A: A!, B: B!, bias },
      readAttrs(attrs!),
    );
  };
  const configs: Omit<KernelConfig, "backendName">[] = [
    { kernelName: KERNELS.forward, kernelFunc: forward },
    { kernelName: KERNELS.forwardPacked, kernelFunc: forward },
    {
      kernelName: KERNELS.projectGrad,
      kernelFunc: ({ inputs, backend }) => {
        const { dy, B } = inputs as NamedTensorInfoMap;
        const d = dimsOf(inputs);
        return projectGrad(webgpuBackendOf(backend), dy!, B!, d);
      },
    },
    {
      kernelName: KERNELS.gradX,
      kernelFunc: ({ inputs, backend, attrs }) => {
        const { dy, g, A } = inputs as NamedTensorInfoMap;
        const W = weightInput(inputs as NamedTensorInfoMap, attrs!);
        const d = dimsOf(inputs);
        return loraGradX(
          webgpuBackendOf(backend),
          { dy: dy!, W, g: g!, A: A! },
          d,
          readAttrs(attrs!),
        );
      },
    },
    {
      kernelName: KERNELS.gradA,
      kernelFunc: ({ inputs, backend, attrs }) => {
        const { g, x } = inputs as NamedTensorInfoMap;
        const d = dimsOf(inputs);
        return loraGradA(
          webgpuBackendOf(backend),
          g!,
          x!,
          d,
          readAttrs(attrs!),
        );
      },
    },
    {
      kernelName: KERNELS.gradB,
      kernelFunc: ({ inputs, backend, attrs }) => {
        const { dy, x, A } = inputs as NamedTensorInfoMap;
        const d = dimsOf(inputs);
        const gpu = webgpuBackendOf(backend);
        const a = readAttrs(attrs!);
        // h is recomputed rather than kept from the forward pass: [T, R] is cheap to rebuild, and saves memory.
        const h = projectDown(gpu, x!, A!, d, a);
        try {
          return loraGradB(gpu, dy!, h, d, a);
        } finally {
          disposeIntermediate(gpu, h);
        }
      },
    },
  ];
  for (const config of configs)
    registerKernel({ ...config, backendName: "webgpu" });
}
