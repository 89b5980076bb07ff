---@brief Insert-mode keys that act on a shown suggestion and otherwise do what the key did before.
---
--- What a key did before is kept under `<Plug>(codestral-fallback-ACTION)`: a copy of its previous
--- global mapping (0.11 maps <Tab> to jump through snippets) or, if it had none, the key itself
--- unmapped. Our mapping returns either the action or that fallback.

local M = {}

---@type table<string, table|false> lhs -> its global insert-mode mapping before ours (false: none)
local originals = {}

local descriptions = {
  accept = "Accept the suggestion",
  accept_word = "Accept the next word of the suggestion",
  accept_line = "Accept the next line of the suggestion",
  next = "Next suggestion",
  prev = "Previous suggestion",
  dismiss = "Dismiss the suggestion",
}

---@param lhs string
---@return table|false
local function global_mapping(lhs)
  local mapping = vim.fn.maparg(lhs, "i", false, true)
  return not vim.tbl_isempty(mapping) and mapping.buffer == 0 and mapping or false
end

--- Makes `plug` do what `lhs` did before: its old mapping, or the key's built-in behaviour.
---@param plug string
---@param lhs string
local function set_fallback(plug, lhs)
  local original = originals[lhs]
  if original then
    local copy = vim.tbl_extend("force", original, {
      lhs = plug,
      lhsraw = vim.api.nvim_replace_termcodes(plug, true, true, true),
    })
    copy.lhsrawalt = nil
    vim.fn.mapset("i", false, copy)
  else
    vim.keymap.set("i", plug, lhs, { desc = "codestral: " .. lhs .. " without a suggestion" })
  end
end

--- Gives every key back the mapping it had before ours.
local function restore()
  for lhs, original in pairs(originals) do
    pcall(vim.keymap.del, "i", lhs)
    if original then
      vim.fn.mapset("i", false, original)
    end
  end
  originals = {}
end

---@param keymaps codestral.Keymaps|false
function M.set(keymaps)
  restore()
  for action, lhs in pairs(keymaps or {}) do
    if lhs then
      originals[lhs] = global_mapping(lhs)
      local plug = ("<Plug>(codestral-fallback-%s)"):format(action)
      set_fallback(plug, lhs)
      local run = ("<Cmd>lua require('codestral.suggestion').%s()<CR>"):format(action)
      local always = action == "next" or action == "prev" -- ask for a suggestion when none is shown
      vim.keymap.set("i", lhs, function()
        return (always or require("codestral.suggestion").is_visible()) and run or plug
      end, { expr = true, remap = true, silent = true, desc = "codestral: " .. descriptions[action] })
    end
  end
end

return M
