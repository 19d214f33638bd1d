/* lib.js, from STATICFILES_DIRS under the "vendor" prefix */
window.lib = 1;
