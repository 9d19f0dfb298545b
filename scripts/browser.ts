/**
 * Real Chromium for end-to-end tests and `npm run demo:headless`: Debian's build, headless, with WebGPU on SwiftShader
 * (tests) or on Mesa's lavapipe (`launchChromium([], { lavapipe: true })`, the main job). The demo is built by Vite and
 * served by `vite preview` on localhost (WebGPU needs a secure context).
 */
import { existsSync } from "node:fs";
import { basename } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium, type Browser, type Page } from "playwright-core";
import { build, preview, type PreviewServer } from "vite";

export const CHROMIUM = process.env["WEBTUNE_CHROMIUM"] ?? "/usr/bin/chromium";

const configFile = fileURLToPath(new URL("../vite.config.ts", import.meta.url));

export const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--enable-unsafe-webgpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** Mesa's lavapipe (a Vulkan driver that runs on the CPU), installed by scripts/setup.sh. */
export const LAVAPIPE_ICD = "/usr/share/vulkan/icd.d/lvp_icd.json";

/**
 * WebGPU on lavapipe instead of SwiftShader, about ten times faster here. Chromium only hands its Vulkan backend
 * to WebGPU for GPUs that can share images with the compositor (lavapipe lacks VK_EXT_image_drm_format_modifier
 * and VK_KHR_external_semaphore_fd), so Dawn's OpenGL ES backend is used instead, on ANGLE, on Vulkan, on
 * lavapipe. That backend offers only WebGPU's compatibility feature level, which every page gets through
 * --force-webgpu-compat (webtune raises the limits it needs). Developer features let `adapter.info` name the driver.
 * Playwright's own SwiftShader switches are dropped.
 */
const LAVAPIPE_ARGS = [
  "--enable-features=Vulkan",
  "--use-vulkan=native",
  "--use-angle=vulkan",
  "--ignore-gpu-blocklist",
  "--use-webgpu-adapter=opengles",
  "--force-webgpu-compat",
  "--enable-webgpu-developer-features",
];
const SWIFTSHADER_DEFAULT_ARGS = [
  "--use-angle=swiftshader-webgl",
  "--enable-unsafe-swiftshader",
];

/**
 * Whether launchChromium({ lavapipe: true }) really uses lavapipe: its driver is installed and
 * WEBTUNE_WEBGPU=swiftshader does not ask for SwiftShader.
 */
export function lavapipeAvailable(): boolean {
  return (
    process.env["WEBTUNE_WEBGPU"] !== "swiftshader" && existsSync(LAVAPIPE_ICD)
  );
}

export async function launchChromium(
  extraArgs: string[] = [],
  options: { lavapipe?: boolean } = {},
): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `Chromium not found at ${CHROMIUM}: install it with \`sudo bash scripts/setup-system.sh\` ` +
        "(or set WEBTUNE_CHROMIUM to a Chromium binary).",
    );
  }
  const lavapipe = options.lavapipe === true && lavapipeAvailable();
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [...CHROMIUM_ARGS, ...(lavapipe ? LAVAPIPE_ARGS : []), ...extraArgs],
    ...(lavapipe
      ? {
          ignoreDefaultArgs: SWIFTSHADER_DEFAULT_ARGS,
          env: { ...process.env, VK_ICD_FILENAMES: LAVAPIPE_ICD },
        }
      : {}),
  });
}

/**
 * Builds the demo, or another page folder (`root`) with the same Vite config, and serves the build on a free
 * localhost port.
 */
export async function serveDemo(root?: string): Promise<{
  url: string;
  close: () => Promise<void>;
}> {
  const overrides = root
    ? {
        root,
        build: {
          outDir: fileURLToPath(
            new URL(`../dist/e2e-${basename(root)}`, import.meta.url),
          ),
          emptyOutDir: true,
        },
      }
    : {};
  await build({ configFile, logLevel: "warn", ...overrides });
  const server: PreviewServer = await preview({
    configFile,
    logLevel: "warn",
    ...overrides,
    preview: { host: "127.0.0.1", port: 0, strictPort: false },
  });
  const address = server.httpServer.address();
  if (address === null || typeof address === "string")
    throw new Error("vite preview did not report a port");
  return {
    url: `http://127.0.0.1:${address.port}/`,
    close: () => server.close(),
  };
}

/**
 * Waits until the demo page is idle (its DemoApp's phase) or shows its error banner; returns the banner's text,
 * or "" when there is none.
 */
export async function demoSettled(
  page: Page,
  timeout: number,
): Promise<string> {
  await page.waitForFunction(
    () =>
      (window as { webtuneDemo?: { phase: string } }).webtuneDemo?.phase ===
        "idle" || !document.querySelector<HTMLElement>("#banner")!.hidden,
    undefined,
    { timeout, polling: 200 },
  );
  const banner = page.locator("#banner");
  return (await banner.isVisible()) ? banner.innerText() : "";
}
