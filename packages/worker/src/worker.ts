/** The dedicated worker's entry point: the service, exposed through comlink. */
import * as Comlink from "comlink";
import { TrainerService } from "./service.js";

Comlink.expose(new TrainerService());
