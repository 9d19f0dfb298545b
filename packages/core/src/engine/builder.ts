/**
 * What model and adapter code hold while they record a step: the graph, how tfjs tensors (frozen weights, norm
 * vectors, biases) enter it as externals bound in place, how trainable tensors enter it as ranges of the training
 * state, and whether this is a training graph (dropout on, gradients recorded) or a forward-only one.
 */
import type * as tf from "@tensorflow/tfjs";
import { tensorBuffer } from "../backend/interop.js";
import { ShapeError } from "../errors.js";
import { weightAttrs, type WeightAttrs } from "../kernels/quant/inputs.js";
import { isPacked, type Matrix } from "../kernels/quant/packed.js";
import type { GraphTensor, StepGraph, TensorRange } from "./graph.js";
import type { TrainState } from "./state.js";

/** A weight matrix as the matmul programs bind it: its data (f32, or packed words), then its scales. */
export interface BoundMatrix {
  data: GraphTensor | TensorRange;
  scales: GraphTensor[];
  attrs: WeightAttrs;
  /** Logical [rows, cols] as stored. */
  shape: [number, number];
  /** Where its gradient goes, when it trains (full fine-tuning, in a training graph). */
  grad?: TensorRange;
}

/** A vector of the model (a bias, a norm's weight) as a step binds it; `grad` when it trains. */
export interface BoundVector {
  value: GraphTensor | TensorRange;
  grad: TensorRange | undefined;
  /** Elements. */
  size: number;
}

/** A trainable tensor's value and (in a training graph) gradient, as ranges of the training state's buffers. */
export interface BoundParam {
  value: TensorRange;
  grad: TensorRange | undefined;
}

export class StepBuilder {
  private readonly externals = new Map<object, GraphTensor>();
  private readonly matrices = new Map<object, BoundMatrix>();
  private readonly concats = new Map<string, GraphTensor>();
  private stateTensors: { params: GraphTensor; grads: GraphTensor } | undefined;

  constructor(
    readonly g: StepGraph,
    /** Programs suited to CPU adapters (lavapipe, SwiftShader). */
    readonly software: boolean,
    /** "train": dropout on and gradients recorded; "eval": the forward pass alone. */
    readonly mode: "train" | "eval",
    /** Where trainable tensors live during training; without one, they are bound where tfjs keeps them. */
    readonly state?: TrainState,
  ) {
    if (mode === "train" && !state)
      throw new ShapeError("A training graph needs a training state.");
  }

  get training(): boolean {
    return this.mode === "train";
  }

  /** A tfjs tensor bound where tfjs keeps it (the same GraphTensor each time it is asked for). */
  tensor(t: tf.Tensor, name: string): GraphTensor {
    let bound = this.externals.get(t);
    if (!bound) {
      const dtype = t.dtype === "int32" ? "i32" : "f32";
      if (t.dtype !== "int32" && t.dtype !== "float32")
        throw new ShapeError(`${name}: a ${t.dtype} tensor cannot be bound.`);
      bound = this.g.external(name, t.shape, () => tensorBuffer(t), dtype);
      this.externals.set(t, bound);
    }
    return bound;
  }

  /**
   * tfjs tensors' values one after another as one tensor of `shape`, copied when the graph is compiled (see
   * `StepGraph.concat`): the same GraphTensor each time the same tensors are asked for.
   */
  concatenated(
    tensors: tf.Tensor[],
    name: string,
    shape: number[],
  ): GraphTensor {
    const key = this.concats.get(name);
    if (key) return key;
    const t = this.g.concat(
      name,
      shape,
      tensors.map((x) => ({
        resolve: () => tensorBuffer(x),
        bytes: 4 * x.size,
      })),
    );
    this.concats.set(name, t);
    return t;
  }

  /**
   * A weight matrix, f32 or packed, with its scales in the order the matmul programs bind them. A weight the
   * training state holds (full fine-tuning) is bound there, with its gradient.
   */
  matrix(m: Matrix, name: string): BoundMatrix {
    let bound = this.matrices.get(m);
    if (!bound) {
      if (!isPacked(m) && this.state?.has(m as tf.Variable)) {
        const p = this.param(m as tf.Variable);
        bound = {
          data: p.value,
          scales: [],
          attrs: weightAttrs(m),
          shape: [m.shape[0]!, m.shape[1]!],
          grad: p.grad,
        };
      } else if (isPacked(m)) {
        const [data, ...scales] = m.tensors();
        bound = {
          data: this.tensor(data!, `${name} (packed ${m.format})`),
          scales: scales.map((s, i) => this.tensor(s, `${name} scales ${i}`)),
          attrs: weightAttrs(m),
          shape: m.shape,
        };
      } else {
        bound = {
          data: this.tensor(m, name),
          scales: [],
          attrs: weightAttrs(m),
          shape: [m.shape[0]!, m.shape[1]!],
        };
      }
      this.matrices.set(m, bound);
    }
    return bound;
  }

  /** A bias or a norm's weight: bound in place, or in the training state with its gradient when it trains. */
  vector(t: tf.Tensor, name: string): BoundVector {
    if (this.state?.has(t as tf.Variable)) {
      const { value, grad } = this.param(t as tf.Variable);
      return { value, grad, size: t.size };
    }
    const value = this.tensor(t, name);
    return { value, grad: undefined, size: value.size };
  }

  /**
   * A trainable variable's value, and in a training graph its gradient. A variable the training state does not
   * hold (a frozen adapter) is bound where tfjs keeps it, with no gradient.
   */
  param(v: tf.Variable): BoundParam {
    const state = this.state;
    if (!state?.has(v)) {
      const value = this.tensor(v, v.name);
      return { value: value.range(0, value.size), grad: undefined };
    }
    this.stateTensors ??= {
      params: this.g.external("params", [state.size], () => state.params),
      grads: this.g.external("grads", [state.size], () => state.grads),
    };
    const { offset, length } = state.slot(v);
    return {
      value: this.stateTensors.params.range(offset, length),
      grad: this.training
        ? this.stateTensors.grads.range(offset, length)
        : undefined,
    };
  }
}
