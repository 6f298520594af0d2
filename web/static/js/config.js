// The page's settings, passed by the server as JSON in <body data-config> (the CSP allows no
// inline script). URLs come from the server, so the page works under any --base-path.
export const config = JSON.parse(document.body.dataset.config);
