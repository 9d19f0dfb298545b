/** Real Chromium and the served demo for end-to-end tests: the same helpers `npm run demo:headless` uses. */
export {
  CHROMIUM,
  CHROMIUM_ARGS,
  demoSettled,
  launchChromium,
  serveDemo,
} from "../../scripts/browser.js";
