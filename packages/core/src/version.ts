/** webtune's version, as packages/core/package.json gives it (a test keeps the two equal). */
export const WEBTUNE_VERSION = "0.1.0";
