// Drive the playground page in headless Chromium (Debian's, through playwright-core): draw a
// digit, restyle it, check ten restyled images and a predicted label appear, sample, and save a
// screenshot. Usage: node playground_browser.js URL SCREENSHOT.png
"use strict";
const { chromium } = require("playwright-core");

async function main() {
  const [url, screenshot] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1000, height: 1100 } });
    const errors = [];
    page.on("pageerror", (error) => errors.push(String(error)));
    await page.goto(url);
    await page.waitForFunction(() => document.getElementById("model").textContent.includes("version"));
    const box = await page.locator("#pad").boundingBox();
    // A "7": a bar across the top, then a stroke down to the lower left.
    const stroke = async (points) => {
      await page.mouse.move(box.x + points[0][0], box.y + points[0][1]);
      await page.mouse.down();
      for (const [x, y] of points.slice(1)) await page.mouse.move(box.x + x, box.y + y, { steps: 8 });
      await page.mouse.up();
    };
    await stroke([[70, 60], [210, 60], [120, 230]]);
    await page.click("#send");
    await page.waitForFunction(() => document.querySelectorAll("#restyled img.restyled").length === 10);
    await page.waitForFunction(() => [...document.querySelectorAll("#restyled img.restyled")]
      .every((img) => img.complete && img.naturalWidth === 28));
    const predicted = (await page.textContent("#predicted")).trim();
    if (!/^[0-9]$/.test(predicted)) throw new Error(`no predicted label shown: ${predicted}`);
    const bars = await page.locator("#probabilities .bar").count();
    if (bars !== 10) throw new Error(`${bars} probability bars`);
    await page.fill("#seed", "7");
    await page.click("#sample");
    await page.waitForFunction(() => document.querySelectorAll("#samples img.sample").length === 80);
    const shown = (await page.textContent("#error")).trim();
    if (shown || errors.length) throw new Error(`page errors: ${shown} ${errors.join("; ")}`);
    await page.screenshot({ path: screenshot, fullPage: true });
    console.log(JSON.stringify({ predicted, restyled: 10 }));
  } finally {
    await browser.close();
  }
}

main().catch((error) => { console.error(error); process.exit(1); });
