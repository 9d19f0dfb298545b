/** tfjs kernel names of the fused norms, registered for 'webgpu'; other backends compose stock ops. */
export const NORM_KERNELS = {
  /** {x [rows, C], scale [C]} -> [rows, C]; attrs { eps } */
  rms: "WebtuneRmsNorm",
  /** {x [rows, C], weight [C], bias [C]} -> [rows, C]; attrs { eps } */
  layer: "WebtuneLayerNorm",
} as const;
