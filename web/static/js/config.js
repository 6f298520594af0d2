// The page's settings, passed by the server as JSON in <body data-config> (the CSP allows no
// inline script). URLs come from the server, so the page works under any --base-path.
export const config = JSON.parse(document.body.dataset.config);

/**
 * A server URL with `params` in its query; on a fleet's host page (/host/NAME) the host's
 * name too, so every request reads that host.
 */
export function apiUrl(url, params = {}) {
  const full = new URL(url, location.href);
  if (config.host) full.searchParams.set("host", config.host);
  for (const [key, value] of Object.entries(params)) full.searchParams.set(key, String(value));
  return full;
}
