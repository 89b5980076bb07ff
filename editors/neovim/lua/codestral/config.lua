---@brief Options of `require("codestral").setup()`: defaults, merging and validation.

local M = {}

---@alias codestral.Action "accept"|"accept_word"|"accept_line"|"next"|"prev"|"dismiss"

---@class (exact) codestral.Keymaps
---@field accept string|false Accept the whole suggestion.
---@field accept_word string|false Accept up to the end of the next word.
---@field accept_line string|false Accept up to the end of the current line of the suggestion.
---@field next string|false Show the next suggestion (asks for one when none is shown).
---@field prev string|false Show the previous suggestion (asks for one when none is shown).
---@field dismiss string|false Hide the suggestion.

---@class (exact) codestral.Config
---@field cmd string[]|fun(dispatchers: vim.lsp.rpc.Dispatchers): vim.lsp.rpc.PublicClient Server command.
---@field filetypes string[] Filetypes to attach to; `{ "*" }` attaches to every file.
---@field auto_trigger boolean Ask for suggestions while typing in insert mode.
---@field debounce_ms integer Quiet time after the last keystroke before asking, in ms.
---@field keymaps codestral.Keymaps|false Insert-mode keys; `false` sets none.
---@field settings table The server's settings tree, camelCase, e.g. `{ completion = { maxTokens = 32 } }`.

---@class (partial) codestral.UserConfig: codestral.Config

---@type codestral.Config
M.defaults = {
  -- Command that starts the language server (LSP over stdio).
  cmd = { "codestral-lsp", "serve" },
  -- Filetypes the server attaches to: the languages it parses with tree-sitter (the server's language
  -- profiles that have a grammar; a test keeps the two lists equal). { "*" }: every file.
  filetypes = {
    "c",
    "cpp",
    "go",
    "java",
    "javascript",
    "javascriptreact",
    "lua",
    "python",
    "rust",
    "typescript",
    "typescriptreact",
  },
  -- Ask for a suggestion after each change in insert mode; when false, only `request()` or next/prev ask.
  auto_trigger = true,
  -- Milliseconds without a keystroke before an automatic request is sent (the server debounces too).
  debounce_ms = 50,
  -- Insert-mode keys. Each one acts only while a suggestion is shown and otherwise does what the key
  -- always does (next/prev ask for a suggestion instead). A key set to false is left alone.
  keymaps = {
    accept = "<Tab>",
    accept_word = "<M-w>",
    accept_line = "<M-l>",
    next = "<M-]>",
    prev = "<M-[>",
    dismiss = "<C-]>",
  },
  -- The server's settings (camelCase, as in the server's settings list), sent as initializationOptions
  -- and again through workspace/didChangeConfiguration whenever setup() runs again.
  settings = {},
}

---@param name string
---@param value any
---@param validator vim.validate.Validator
---@param message? string
local function check(name, value, validator, message)
  if value == nil then
    return
  end
  if vim.fn.has("nvim-0.11") == 1 then
    vim.validate(name, value, validator, message)
  else
    vim.validate({ [name] = { value, validator, message } })
  end
end

local function is_list_of_strings(v)
  return vim.islist(v) and #vim.tbl_filter(function(x)
    return type(x) ~= "string"
  end, v) == 0
end

local function is_key(v)
  return v == false or (type(v) == "string" and v ~= "")
end

---@param user table
local function validate(user)
  for key in pairs(user) do
    if M.defaults[key] == nil then
      error(("unknown option %q (known: %s)"):format(key, table.concat(vim.tbl_keys(M.defaults), ", ")), 0)
    end
  end
  check("cmd", user.cmd, function(v)
    return vim.is_callable(v) or (is_list_of_strings(v) and #v > 0)
  end, "non-empty list of strings or function")
  check("filetypes", user.filetypes, is_list_of_strings, "list of strings")
  check("auto_trigger", user.auto_trigger, "boolean")
  check("debounce_ms", user.debounce_ms, function(v)
    return type(v) == "number" and v >= 0 and v % 1 == 0
  end, "integer >= 0")
  check("settings", user.settings, "table")
  check("keymaps", user.keymaps, function(v)
    return v == false or type(v) == "table"
  end, "table or false")
  for action, lhs in pairs(user.keymaps or {}) do
    if M.defaults.keymaps[action] == nil then
      error(("unknown keymap %q (known: %s)"):format(action, table.concat(vim.tbl_keys(M.defaults.keymaps), ", ")), 0)
    end
    check("keymaps." .. action, lhs, is_key, "key string or false")
  end
end

--- Merges the user's options over the defaults; raises an error that names the offending option.
---@param user? codestral.UserConfig
---@return codestral.Config
function M.resolve(user)
  user = user or {}
  local ok, err = pcall(validate, user)
  if not ok then
    error("codestral.setup: " .. tostring(err):gsub("^[^:]*:%d+: ", ""), 0)
  end
  local merged = vim.tbl_deep_extend("force", vim.deepcopy(M.defaults), user)
  -- Lists replace rather than merge, and `keymaps = false` turns every key off.
  merged.cmd = user.cmd or M.defaults.cmd
  merged.filetypes = user.filetypes or M.defaults.filetypes
  if user.keymaps == false then
    merged.keymaps = false
  end
  return merged
end

return M
