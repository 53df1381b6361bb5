// esbuild bundles the stylesheet the script imports into app.css.
declare module "*.css";
