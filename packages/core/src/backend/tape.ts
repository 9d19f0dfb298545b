/**
 * tfjs-core's gradient tape, from outside: a backward pass that frees as it goes, and shape-only saves for the
 * kernels whose gradients read only shapes. The tape-based training path (the compiled step's oracle, and full
 * fine-tuning) relies on these to keep its memory bounded.
 */
import * as tf from "@tensorflow/tfjs";
import { ShapeError } from "../errors.js";

/** tfjs-core's record of one kernel call on the gradient tape. */
interface TapeNode {
  id: number;
  kernelName: string;
  inputs: Record<string, tf.Tensor>;
  outputs: tf.Tensor[];
  saved?: tf.Tensor[];
  gradient?: (dys: (tf.Tensor | null)[]) => Record<string, () => tf.Tensor>;
}

/** The part of tfjs-core's Engine that `engine.gradients` drives. */
interface TapeEngine {
  state: { activeTape: TapeNode[] | null; gradientDepth: number };
  startTape(): void;
  endTape(): void;
  scopedRun<T>(start: () => void, end: () => void, f: () => T): T;
  tidy<T extends tf.TensorContainer>(name: string, f: () => T): T;
}

/** The nodes on a path from some x to y, each with only the inputs that depend on an x (tfjs's own filter). */
function nodesFromXToY(
  tape: TapeNode[],
  xs: tf.Tensor[],
  y: tf.Tensor,
): TapeNode[] {
  const fromX = new Set(xs.map((x) => x.id));
  const nodesFromX = new Set<number>();
  for (const node of tape) {
    if (Object.values(node.inputs).some((t) => fromX.has(t.id))) {
      nodesFromX.add(node.id);
      for (const o of node.outputs) fromX.add(o.id);
    }
  }
  const toY = new Set([y.id]);
  const nodesToY = new Set<number>();
  for (let i = tape.length - 1; i >= 0; i--) {
    const node = tape[i]!;
    if (node.outputs.some((o) => toY.has(o.id))) {
      nodesToY.add(node.id);
      for (const t of Object.values(node.inputs)) toY.add(t.id);
    }
  }
  return tape
    .filter((n) => nodesFromX.has(n.id) && nodesToY.has(n.id))
    .map((n) => ({
      ...n,
      inputs: Object.fromEntries(
        Object.entries(n.inputs).filter(([, t]) => fromX.has(t.id)),
      ),
    }));
}

function disposeSaved(node: TapeNode): void {
  for (const t of node.saved ?? []) t.dispose();
}

/**
 * `tf.engine().gradients` with the same results, but a backward pass that frees memory as it goes. tfjs keeps
 * every tensor the forward pass saved, and every intermediate gradient, until the whole backward pass ends: for a
 * 32-layer model that doubles the peak. Here a node's saved tensors and its outputs' gradients are disposed as
 * soon as the node's input gradients exist (no other node reads them), and the saved tensors of nodes that lie
 * on no path from xs to y are disposed before the backward pass starts. Nested inside another backward pass (as a
 * checkpointed block's recomputation is), the outer tape is kept and restored.
 */
export function gradientsFreeingAsTheyGo(
  f: () => tf.Tensor,
  xs: tf.Tensor[],
  dy?: tf.Tensor,
): { value: tf.Tensor; grads: (tf.Tensor | null)[] } {
  const engine = tf.engine() as unknown as TapeEngine;
  const outerTape = engine.state.activeTape;
  // Higher-order gradients (an enclosing tape still recording) need every saved tensor until the end.
  const eager = engine.state.gradientDepth === 0;
  try {
    const y = engine.scopedRun(
      () => engine.startTape(),
      () => engine.endTape(),
      () => engine.tidy("forward", f),
    );
    const tape = engine.state.activeTape ?? [];
    const path = nodesFromXToY(tape, xs, y);
    const onPath = new Set(path.map((n) => n.id));
    if (eager) for (const n of tape) if (!onPath.has(n.id)) disposeSaved(n);
    return engine.tidy("backward", () => {
      const seed = dy ?? tf.onesLike(y);
      const grads = new Map<number, tf.Tensor>([[y.id, seed]]);
      const keep = new Set([seed, ...xs].map((t) => t.id));
      for (let i = path.length - 1; i >= 0; i--) {
        const node = path[i]!;
        backpropNode(node, grads, engine);
        if (!eager) continue;
        disposeSaved(node);
        for (const o of node.outputs) {
          const g = grads.get(o.id);
          if (g && !keep.has(o.id) && g !== seed) {
            g.dispose();
            grads.delete(o.id);
          }
        }
      }
      const out = xs.map((x) => grads.get(x.id) ?? null);
      if (eager) for (const n of tape) disposeSaved(n);
      return { value: y, grads: out } as unknown as tf.TensorContainer;
    }) as unknown as { value: tf.Tensor; grads: (tf.Tensor | null)[] };
  } finally {
    if (eager) engine.state.activeTape = outerTape;
  }
}

/** One node of the backward pass, as tfjs's `backpropagateGradients` does it: dys in, input gradients added up. */
function backpropNode(
  node: TapeNode,
  grads: Map<number, tf.Tensor>,
  engine: TapeEngine,
): void {
  if (!node.gradient)
    throw new ShapeError(
      `Cannot compute gradient: gradient function not found for ${node.kernelName}.`,
    );
  const names = Object.keys(node.inputs);
  // One scope for the node: a customGrad computes its gradients eagerly inside `node.gradient`, and those
  // intermediates would otherwise live until the whole backward pass ends.
  const dys = node.outputs.map((o) => grads.get(o.id) ?? null);
  const computed = engine.tidy(`grad ${node.kernelName}`, () => {
    const inputGrads = node.gradient!(dys);
    return names.map((name) => {
      const grad = inputGrads[name];
      if (!grad)
        throw new ShapeError(
          `Cannot backprop through input ${name} of ${node.kernelName}.`,
        );
      return grad();
    });
  });
  // A gradient passed straight through (dx = dy) gets its own handle: the node's dys are disposed after it.
  const dxs = computed.map((dx) => (dys.includes(dx) ? dx.clone() : dx));
  names.forEach((name, i) => {
    const x = node.inputs[name]!;
    const dx = dxs[i]!;
    if (dx.shape.join() !== x.shape.join())
      throw new ShapeError(
        `The gradient of ${node.kernelName}'s input ${name} is [${dx.shape.join(", ")}], but the input is [${x.shape.join(", ")}].`,
      );
    const sum = grads.get(x.id);
    if (!sum) grads.set(x.id, dx);
    else {
      grads.set(x.id, tf.add(sum, dx));
      sum.dispose();
      dx.dispose();
    }
  });
}

/**
 * `tf.variableGrads` on `gradientsFreeingAsTheyGo`: the loss and the gradient of each variable that reaches it,
 * keyed by variable name (variables the loss does not read get none, as in tfjs).
 */
export function variableGradsFreeingAsTheyGo(
  f: () => tf.Scalar,
  variables: tf.Variable[],
): { value: tf.Scalar; grads: tf.NamedTensorMap } {
  const trained = variables.filter((v) => v.trainable);
  const { value, grads } = gradientsFreeingAsTheyGo(f, trained);
  const named: tf.NamedTensorMap = {};
  trained.forEach((v, i) => {
    const g = grads[i];
    if (g) named[v.name] = g;
  });
  if (Object.keys(named).length === 0 && trained.length > 0) {
    tf.dispose(value);
    throw new ShapeError(
      "None of the trainable variables reaches the loss: check that the adapter is active and applies to the model.",
    );
  }
  return { value: value as tf.Scalar, grads: named };
}

/**
 * Kernels whose tfjs gradient reads only the shapes of what it saved (checked against tfjs-core's
 * gradients/*_grad.js): Reshape, ExpandDims, Slice, Concat and Pack need the input shapes, Add and Sub the
 * operand shapes for broadcasting, Sum and Mean the input shape.
 */
const SHAPE_ONLY_GRADIENTS = new Set([
  "Reshape",
  "ExpandDims",
  "Slice",
  "Concat",
  "Pack",
  "Add",
  "Sub",
  "Sum",
  "Mean",
]);

/** What a shape-only gradient reads of a saved tensor: its shape, with no data behind it. */
interface ShapeStub {
  shape: number[];
  rank: number;
  size: number;
  dtype: tf.DataType;
  isDisposed: boolean;
  dispose(): void;
}

function shapeStub(t: tf.Tensor): ShapeStub {
  const stub = {
    shape: t.shape.slice(),
    rank: t.rank,
    size: t.size,
    dtype: t.dtype,
    isDisposed: false,
    dispose: () => undefined,
  };
  t.dispose();
  return stub;
}

let shapeOnlySaves = false;

/**
 * Makes tfjs keep only shapes, not tensors, for the backward pass of the kernels in SHAPE_ONLY_GRADIENTS. tfjs
 * saves a reshape's input, and both operands of an add, only to read their shapes, but the saved tensor keeps
 * its buffer alive until the backward pass ends: a projection's output behind a reshape, or a residual stream
 * behind an add, for every layer. On a 32-layer model that was most of the activation memory. Installed once
 * per realm by initRuntime; gradients are unchanged (tests compare them against tfjs's own).
 */
export function keepOnlyShapesForShapeGradients(): void {
  if (shapeOnlySaves) return;
  const engine = tf.engine() as unknown as {
    addTapeNode(
      kernelName: string,
      inputs: unknown,
      outputs: unknown,
      gradientsFunc: unknown,
      saved: tf.Tensor[] | undefined,
      attrs: unknown,
    ): void;
  };
  const add = engine.addTapeNode.bind(engine);
  engine.addTapeNode = (kernelName, inputs, outputs, grad, saved, attrs) =>
    add(
      kernelName,
      inputs,
      outputs,
      grad,
      SHAPE_ONLY_GRADIENTS.has(kernelName) && saved
        ? (saved.map(shapeStub) as unknown as tf.Tensor[])
        : saved,
      attrs,
    );
  shapeOnlySaves = true;
}
