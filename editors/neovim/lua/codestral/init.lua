---@brief Inline code completions from a local Codestral-style model, through `codestral-lsp`.
---
--- ```lua
--- require("codestral").setup({ settings = { completion = { maxTokens = 32 } } })
--- ```
--- Modules load on first use: requiring this one costs nothing.

local M = {}

---@type codestral.Config|nil the options of the last setup()
M.config = nil

local function define_highlight()
  vim.api.nvim_set_hl(0, "CodestralSuggestion", { link = "Comment", default = true })
end

--- Starts the server for matching buffers and sets the keys and autocommands. Safe to call again:
--- the new options replace the old ones and running servers receive the new settings.
---@param opts? codestral.UserConfig
function M.setup(opts)
  if vim.fn.has("nvim-0.10") == 0 then
    return vim.notify("codestral: needs Neovim 0.10 or newer", vim.log.levels.ERROR)
  end
  local config = require("codestral.config").resolve(opts)
  define_highlight()
  vim.api.nvim_create_autocmd("ColorScheme", {
    group = vim.api.nvim_create_augroup("codestral.highlight", { clear = true }),
    callback = define_highlight,
  })
  require("codestral.suggestion").setup(config)
  require("codestral.keymaps").set(config.keymaps)
  require("codestral.client").enable(config)
  M.config = config
end

--- Asks for a suggestion at the cursor now.
function M.request()
  require("codestral.suggestion").request()
end

--- Whether a suggestion is shown as ghost text.
---@return boolean
function M.is_visible()
  return require("codestral.suggestion").is_visible()
end

--- Accepts the whole suggestion.
function M.accept()
  require("codestral.suggestion").accept()
end

--- Accepts the suggestion up to the end of its next word.
function M.accept_word()
  require("codestral.suggestion").accept_word()
end

--- Accepts the rest of the suggestion's current line.
function M.accept_line()
  require("codestral.suggestion").accept_line()
end

--- Hides the suggestion.
function M.dismiss()
  require("codestral.suggestion").dismiss()
end

--- Shows the next suggestion, or asks for one when none is shown.
function M.next()
  require("codestral.suggestion").next()
end

--- Shows the previous suggestion, or asks for one when none is shown.
function M.prev()
  require("codestral.suggestion").prev()
end

--- The server's last `codestral/status` (state, message, lastLatencyMs, model, lastBackend), or nil.
---@param bufnr? integer
---@return codestral.Status|nil
function M.status(bufnr)
  return require("codestral.client").status(bufnr)
end

return M
