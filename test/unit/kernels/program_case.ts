/**
 * Running plain engine programs on the real device for kernel tests: a one-graph case whose inputs are host
 * arrays, whose outputs can start from given values (to check what a program leaves untouched, or adds to), and
 * which reads every output back after one run.
 */
import { gpuDevice } from "@webtune/core";
import { Engine } from "../../../packages/core/src/engine/engine.js";
import {
  graphLimits,
  StepGraph,
  type GraphTensor,
  type TensorRange,
} from "../../../packages/core/src/engine/graph.js";
import {
  flatGrid,
  type ProgramCall,
} from "../../../packages/core/src/kernels/program.js";
import type { StepParams } from "../../../packages/core/src/kernels/step_params.js";

/** dst[i] = src[i] for i < size: how an output gets its starting values. */
function copyCall(size: number): ProgramCall {
  return {
    program: {
      key: "test_copy",
      storage: [
        { name: "dst", element: "f32", access: "read_write" },
        { name: "src", element: "f32", access: "read" },
      ],
      uniforms: [{ name: "size", type: "i32" }],
      stepParams: false,
      workgroupSize: [64, 1, 1],
      body: `fn main(i : i32) { if (i < uniforms.size) { dst[i] = src[i]; } }`,
      flat: true,
    },
    uniforms: [size],
    workgroups: flatGrid(Math.ceil(size / 64)),
  };
}

/** One graph of dispatches under test: record inputs, outputs and dispatches, then `run` it once. */
export class ProgramCase {
  readonly g = new StepGraph(graphLimits(gpuDevice()));
  private readonly feeds: [GraphTensor, Float32Array | Int32Array][] = [];
  private readonly outputs: GraphTensor[] = [];

  /** A host array written before the run: f32, or i32 for an Int32Array. */
  input(name: string, data: Float32Array | Int32Array): GraphTensor {
    const t = this.g.input(
      name,
      [data.length],
      data instanceof Int32Array ? "i32" : "f32",
    );
    this.feeds.push([t, data]);
    return t;
  }

  /** An f32 tensor read back after the run; it holds `initial` before the first program writes it. */
  output(name: string, size: number, initial?: Float32Array): GraphTensor {
    const t = this.g.activation(name, [size]);
    if (initial) {
      if (initial.length !== size) throw new Error(`${name}: initial length`);
      this.g.dispatch(`${name} = initial`, copyCall(size), [
        t,
        this.input(`${name} initial`, initial),
      ]);
    }
    this.g.readback(t);
    this.outputs.push(t);
    return t;
  }

  dispatch(
    label: string,
    call: ProgramCall,
    bindings: (GraphTensor | TensorRange)[],
  ): void {
    this.g.dispatch(label, call, bindings);
  }

  /** Compiles, runs once (with `params` as the step parameters) and returns every output, in order. */
  async run(params?: StepParams): Promise<Float32Array[]> {
    const engine = new Engine(gpuDevice());
    try {
      const compiled = engine.compile(this.g);
      const values = await engine.run({
        graphs: [compiled],
        inputs: this.feeds.map(([t, data]) => [compiled, t, data]),
        params,
        readback: this.outputs.map((t) => [compiled, t]),
      });
      return values.map((v) => v.slice());
    } finally {
      engine.dispose();
    }
  }
}

/** The float64 values rounded to f32, as a program's input. */
export const f32 = (values: ArrayLike<number>) => Float32Array.from(values);

/**
 * Central finite differences of a scalar loss L(x) = Σ dy·f(x) in float64: the gradient the backward reference
 * must match. `f` is the forward reference; the step is small against |x| ≈ 1 and the loss smooth.
 */
export function finiteDifferenceGradient(
  f: (x: Float64Array) => ArrayLike<number>,
  x: ArrayLike<number>,
  dy: ArrayLike<number>,
  h = 1e-6,
): Float64Array {
  const point = Float64Array.from(x);
  const loss = () => {
    const y = f(point);
    let s = 0;
    for (let i = 0; i < y.length; i++) s += dy[i]! * y[i]!;
    return s;
  };
  const grad = new Float64Array(point.length);
  for (let i = 0; i < point.length; i++) {
    const v = point[i]!;
    point[i] = v + h;
    const up = loss();
    point[i] = v - h;
    const down = loss();
    point[i] = v;
    grad[i] = (up - down) / (2 * h);
  }
  return grad;
}
