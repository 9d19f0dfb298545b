/** The demo page's state, read from end-to-end tests: its DemoApp (window.webtuneDemo) and its error banner. */
import type { Page } from "playwright-core";

type DemoApp = NonNullable<Window["webtuneDemo"]>;

/** Runs `read` on the page's DemoApp, in the page, and returns what it returns. */
export async function demoState<T>(
  page: Page,
  read: (app: DemoApp) => T,
): Promise<T> {
  const app = await page.evaluateHandle(() => window.webtuneDemo!);
  try {
    return (await app.evaluate(read)) as T;
  } finally {
    await app.dispose();
  }
}

/** The error banner's text, or "" when it is hidden. */
export async function bannerText(page: Page): Promise<string> {
  const banner = page.locator("#banner");
  return (await banner.isVisible()) ? banner.innerText() : "";
}
