/**
 * io: bytes and files only. safetensors read/write, and model files from the hub, URLs or local files.
 * No tfjs and no GPU here: readers return CPU typed arrays, and the model layer uploads them.
 */
export {
  blobSource,
  bytesSource,
  nodeFileSource,
  type ByteSource,
} from "./byte_source.js";
export {
  bf16BitsToF32,
  f16BitsToF32,
  f32ToBf16Bits,
  f32ToF16Bits,
  READABLE_DTYPES,
  type SafetensorsDtype,
} from "./dtypes.js";
export { FileNotFoundError, NetworkError } from "../errors.js";
export {
  openSafetensors,
  SafetensorsFile,
  writeSafetensors,
  type CpuTensor,
  type SafetensorsReader,
  type TensorData,
  type TensorInfo,
  type TensorToWrite,
} from "./safetensors.js";
export {
  openModelWeights,
  openShardedSafetensors,
  type ShardedOptions,
} from "./sharded.js";
export type { ModelFiles } from "./model_files.js";
export {
  httpByteSource,
  openModelFiles,
  type DownloadProgress,
  type LoadOptions,
  type ModelSource,
} from "./hub.js";
export {
  ADAPTER_CONFIG,
  ADAPTER_WEIGHTS,
  adapterKey,
  downloadAdapter,
  saveAdapterToDirectory,
  type AdapterFiles,
} from "./peft.js";
export {
  isDiskFull,
  writeFilesAtomically,
  type FileData,
} from "./atomic_write.js";
export {
  directoryStore,
  opfsStore,
  defaultCheckpointStore,
  type CheckpointStore,
  type CheckpointFiles,
} from "./checkpoint_store.js";
